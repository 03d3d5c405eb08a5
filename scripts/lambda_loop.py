"""The functions of template.yaml under a Lambda Runtime API, as `sam deploy` would run them, on
this machine: the host-built bootstraps, each with exactly the environment the template gives
it (its intrinsics resolved to local values), DynamoDB and Secrets Manager on moto, the
Runtime and Invoke APIs served by `cargo lambda watch --only-lambda-apis`.

It also writes the deployment file `relay serve --lambda-endpoint` reads: which HTTP route
invokes which function, the WebSocket routes' function and stage, the stream mapping's filter,
batch size and retries, the scheduled function. Everything comes from the template: a route,
variable or filter the template does not declare does not exist here either, and an intrinsic
this script cannot resolve stops it.

  lambda_loop.py --bin-dir DIR --runtime-port P --relay-url URL --moto URL
                 --events-table T --connections-table C --deployment OUT
                 [--param Name=Value ...]

The four secret settings come as JSON in the RELAY_LOOP_SECRETS environment variable (never on
the command line): they are put into a new Secrets Manager secret on moto, whose ARN is what
the functions get. Prints one JSON line {"message": "lambda loop ready", ...} once every
bootstrap is started; the functions' own log lines follow on stdout. Stops them on SIGTERM.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import boto3
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"
ACCOUNT = "123456789012"


class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def load_template(path):
    class Loader(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return Tagged(suffix, value)

    Loader.add_multi_constructor("!", construct)
    with open(path) as f:
        return yaml.load(f, Loader=Loader)


class Resolver:
    """CloudFormation intrinsics, resolved to this machine's stand-ins."""

    def __init__(self, template, params, resources):
        self.t = template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(params)
        self.resources = resources
        self.pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                       "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "relay-loop"}

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            return self.resources[name]
        raise SystemExit(f"lambda_loop: no local value for Ref {name}")

    def resolve(self, v):
        if isinstance(v, Tagged):
            v = {("Ref" if v.tag == "Ref" else "Fn::" + v.tag): v.value}
        if isinstance(v, dict) and len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.ref(arg)
            if k == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self.resolve(extra[m.group(1)]))
                              if m.group(1) in extra else str(self.ref(m.group(1))), text)
            if k == "Fn::FindInMap":
                m, a, b = (self.resolve(x) for x in arg)
                return self.t["Mappings"][m][a][b]
            if k == "Fn::GetAtt":
                raise SystemExit(f"lambda_loop: no local value for GetAtt {arg}")
            if k.startswith("Fn::"):
                raise SystemExit(f"lambda_loop: intrinsic {k} is not resolved here")
        if isinstance(v, (dict, list)):
            raise SystemExit(f"lambda_loop: not a scalar: {v!r}")
        return str(v)


def functions_of(t):
    """Logical id -> binary name of every function the template deploys."""
    out = {}
    for lid, r in t["Resources"].items():
        if r.get("Type") == "AWS::Serverless::Function":
            out[lid] = r["Metadata"]["BuildProperties"]["Binary"]
    return out


def target_of(t, value):
    """The logical id a Ref/GetAtt/Sub names."""
    if isinstance(value, Tagged):
        if value.tag == "GetAtt":
            return (value.value.split(".")[0] if isinstance(value.value, str) else value.value[0])
        if value.tag == "Ref":
            return value.value
        if value.tag == "Sub":
            m = re.search(r"\$\{(\w+)(\.Arn)?\}", value.value if isinstance(value.value, str) else value.value[0])
            return m.group(1) if m else None
    return None


def deployment(t, resolver):
    fns = functions_of(t)
    res = t["Resources"]
    integration_fn = {}
    for lid, r in res.items():
        if r.get("Type") == "AWS::ApiGatewayV2::Integration":
            integration_fn[lid] = (target_of(t, r["Properties"]["ApiId"]),
                                   fns.get(target_of(t, r["Properties"]["IntegrationUri"])))
    http_routes, ws_functions = [], set()
    for lid, r in res.items():
        if r.get("Type") != "AWS::ApiGatewayV2::Route":
            continue
        p = r["Properties"]
        integration = re.search(r"integrations/\$\{(\w+)\}", p["Target"].value).group(1)
        api, fn = integration_fn[integration]
        if fn is None:
            raise SystemExit(f"lambda_loop: route {lid} targets no function")
        protocol = res[api]["Properties"]["ProtocolType"]
        if protocol == "HTTP":
            method, path = p["RouteKey"].split(" ", 1)
            http_routes.append({"method": method, "path": path, "function": fn})
        else:
            ws_functions.add(fn)
    if len(ws_functions) != 1:
        raise SystemExit(f"lambda_loop: the WebSocket routes invoke {sorted(ws_functions)}, one function expected")
    stream = None
    for lid, r in res.items():
        if r.get("Type") == "AWS::Lambda::EventSourceMapping":
            p = r["Properties"]
            filters = [json.loads(f["Pattern"]) for f in p.get("FilterCriteria", {}).get("Filters", [])]
            # No MaximumRetryAttempts (-1): retried until the record expires; bounded here.
            retries = int(p.get("MaximumRetryAttempts", -1))
            stream = {"function": fns[target_of(t, p["FunctionName"])], "filters": filters,
                      "batch_size": int(p.get("BatchSize", 100)),
                      "maximum_retry_attempts": retries if retries >= 0 else 10000}
    schedule = None
    for lid, r in res.items():
        if r.get("Type") == "AWS::Serverless::Function":
            for ev in (r["Properties"].get("Events") or {}).values():
                if ev["Type"] in ("ScheduleV2", "Schedule"):
                    schedule = {"function": fns[lid]}
    return {"http_routes": http_routes,
            "websocket": {"function": ws_functions.pop(), "stage": resolver.ref("StageName")},
            "stream": stream, "schedule": schedule}


def environments(t, resolver, relay_url):
    """Binary name -> (its environment from the template, its memory size)."""
    glob = t.get("Globals", {}).get("Function", {})
    base = (glob.get("Environment") or {}).get("Variables") or {}
    out = {}
    for lid, r in t["Resources"].items():
        if r.get("Type") != "AWS::Serverless::Function":
            continue
        p = r["Properties"]
        variables = dict(base)
        variables.update(((p.get("Environment") or {}).get("Variables")) or {})
        env = {}
        for name, value in variables.items():
            v = resolver.resolve(value)
            # API Gateway's endpoints are this machine's relay serve.
            v = re.sub(r"^https://local-(http|websocket)-api\.execute-api\.[a-z0-9-]+\.amazonaws\.com",
                       relay_url, v)
            env[name] = v
        out[r["Metadata"]["BuildProperties"]["Binary"]] = (env, int(p.get("MemorySize", glob.get("MemorySize", 128))))
    return out


def parameters_behind(t, var):
    """The parameters the template passes to the functions as environment variable `var`."""
    glob = t.get("Globals", {}).get("Function", {})
    found = set()
    for scope in [glob] + [r["Properties"] for r in t["Resources"].values()
                           if r.get("Type") == "AWS::Serverless::Function"]:
        value = ((scope.get("Environment") or {}).get("Variables") or {}).get(var)
        if isinstance(value, Tagged) and value.tag == "Ref" and value.value in t.get("Parameters", {}):
            found.add(value.value)
    return found


def wait_port(port, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"lambda_loop: nothing listens on 127.0.0.1:{port}")


def forward(stream):
    for line in iter(stream.readline, b""):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--runtime-port", type=int, required=True)
    ap.add_argument("--relay-url", required=True)
    ap.add_argument("--moto", required=True)
    ap.add_argument("--events-table", required=True)
    ap.add_argument("--connections-table", required=True)
    ap.add_argument("--deployment", required=True)
    ap.add_argument("--instances", type=int, default=3,
                    help="bootstrap processes per function: invocations at once, as Lambda scales out")
    ap.add_argument("--param", action="append", default=[], help="Name=Value: a template parameter")
    ap.add_argument("--testing-secrets-refresh", type=int,
                    help="seconds: the functions read their secret again this often (tests of a "
                         "rotation only; RELAY_TESTING_SECRETS_REFRESH_SECONDS, not a template variable)")
    ap.add_argument("--set", action="append", default=[],
                    help="VAR=Value: the parameter the template gives the functions as VAR")
    a = ap.parse_args()

    t = load_template(a.template)
    secrets = json.loads(os.environ.get("RELAY_LOOP_SECRETS", "{}"))
    sm = boto3.client("secretsmanager", endpoint_url=a.moto, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    arn = sm.create_secret(Name=f"relay-loop-{uuid.uuid4().hex[:12]}", SecretString=json.dumps(secrets))["ARN"]
    params = dict(p.split("=", 1) for p in a.param)
    for setting in a.set:
        var, value = setting.split("=", 1)
        names = parameters_behind(t, var)
        if not names:
            raise SystemExit(f"lambda_loop: no function gets {var} from a template parameter")
        params.update({n: value for n in names})
    resources = {"EventsTable": a.events_table, "ConnectionsTable": a.connections_table,
                 "RelaySecrets": arn, "HttpApi": "local-http-api", "WebSocketApi": "local-websocket-api"}
    resolver = Resolver(t, params, resources)
    dep = deployment(t, resolver)
    with open(a.deployment, "w") as f:
        json.dump(dep, f, indent=1)
    envs = environments(t, resolver, a.relay_url.rstrip("/"))

    children = []

    def stop(*_):
        for c in children:
            try:
                c.kill()
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    venv_bin = os.path.join(ROOT, ".venv", "bin")
    emulator = subprocess.Popen(
        ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(a.runtime_port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"})
    children.append(emulator)
    threading.Thread(target=forward, args=(emulator.stderr,), daemon=True).start()
    wait_port(a.runtime_port)

    for name, (env, memory) in envs.items():
        path = os.path.join(a.bin_dir, name)
        if not os.path.exists(path):
            raise SystemExit(f"lambda_loop: no bootstrap {path} (cargo build --bins)")
        # What Lambda gives every function, then the template's variables: nothing else.
        full = {
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{a.runtime_port}/.rt/{name}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            "LAMBDA_TASK_ROOT": a.bin_dir,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "TZ": ":UTC",
            # Where AWS is, on this machine (the SDK's own setting; the functions never read it).
            "AWS_ENDPOINT_URL": a.moto,
            **env,
        }
        if a.testing_secrets_refresh:
            full["RELAY_TESTING_SECRETS_REFRESH_SECONDS"] = str(a.testing_secrets_refresh)
        for _ in range(max(1, a.instances)):
            child = subprocess.Popen([path], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            children.append(child)
            threading.Thread(target=forward, args=(child.stdout,), daemon=True).start()

    print(json.dumps({"message": "lambda loop ready", "invoke_endpoint": f"http://127.0.0.1:{a.runtime_port}",
                      "deployment": a.deployment, "secret_arn": arn,
                      "functions": sorted(envs)}), flush=True)
    parent = os.getppid()
    while True:
        # The test (or whoever started this) is gone without stopping us: stop with it.
        if os.getppid() != parent:
            stop()
        for c in children:
            if c.poll() is not None:
                print(json.dumps({"message": "lambda loop: a process ended", "args": c.args,
                                  "status": c.returncode}), flush=True)
                children.remove(c)
        time.sleep(0.5)


if __name__ == "__main__":
    main()
