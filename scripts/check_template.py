#!/usr/bin/env python3
"""Project checks of the SAM template (template.yaml), beyond `sam validate` and `cfn-lint`.

    check_template.py [TEMPLATE]       check a template (default: template.yaml); exit 1 on findings
    check_template.py --self-test      prove that every rule fires: mutate the template once per
                                       rule and require the checker to flag each mutant, and to
                                       pass the unmutated template

The template is read with cfn-lint's YAML loader (it understands !Ref, !Sub, !GetAtt, ...) and
transformed with the SAM translator, the same one CloudFormation runs. The rules look at the
result, so they also see what SAM adds on its own: Globals merged into each function, the roles
and AWS managed policies SAM attaches to a function without a Role, the mappings it makes of
stream Events. The transformed template is then linted again with cfn-lint: plain
`cfn-lint template.yaml` checks SAM templates without transforming them, so it cannot see, for
instance, the circular dependency SAM creates between an HttpApi and a function whose
environment names that API.

Rules (each finding prints its rule id):
  iam-star-action        an Allow statement whose Action has a wildcard (`*`, `dynamodb:*`,
                         `dynamodb:Get*`) or that uses NotAction
  iam-star-resource      an Allow statement on Resource `*` or on every resource of a type
                         (`...:table/*`, `...:*`) when the actions allow a narrower resource;
                         an AWS managed policy attached to a role (e.g. the
                         AWSLambdaBasicExecutionRole SAM adds to a function without a Role:
                         logs on `*`)
  lambda-arm64           a Lambda function not on arm64 (no Architectures means x86_64)
  dynamodb-pitr          a table without point-in-time recovery
  dynamodb-ttl           a table without TTL
  esm-on-failure         a stream event source mapping without an on-failure destination
  esm-partial-batch      an event source mapping without ReportBatchItemFailures
  esm-bounded-retries    a stream mapping without BisectBatchOnFunctionError, or with unbounded
                         (absent or -1) MaximumRetryAttempts / MaximumRecordAgeInSeconds
  secret-default         a NoEcho parameter with a Default
  secret-not-noecho      a String parameter named like a secret (Secret, ApiKey, Password,
                         Token), without AllowedValues, and not NoEcho
  transformed-lint       an error cfn-lint reports on the transformed template (E3004: a
                         circular dependency)
  transform              the SAM translator rejects the template
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("SAM_CLI_TELEMETRY", "0")

# The translator warns about its internal metrics on every run; that is not about the template.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parent.parent
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")

# Actions that support no resource-level permissions: `*` is the narrowest resource for them.
WILDCARD_ONLY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:PutMetricData",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "sts:GetCallerIdentity",
}

IDENTITY_POLICY_TYPES = {
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::IAM::User",
    "AWS::IAM::Group",
}

SECRET_NAME = re.compile(r"(secret|apikey|api_key|password|token)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule:22} {self.where}: {self.message}"


# --------------------------------------------------------------------------------------------
# Loading and transforming
# --------------------------------------------------------------------------------------------


def load(path: Path) -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches or template is None:
        for m in matches or []:
            print(f"{path}: {m}", file=sys.stderr)
        raise SystemExit(f"{path}: cannot be parsed")
    return plain(template)


def plain(obj: Any) -> Any:
    """cfn-lint's nodes (dict/str subclasses with line marks) as plain JSON values."""
    return json.loads(json.dumps(obj))


class _AnyManagedPolicy(dict):
    """Managed policy map for the translator: every name resolves (to an AWS managed ARN), so a
    policy named in a function's Policies shows up in the result, where the rules flag it."""

    def __contains__(self, key: object) -> bool:  # noqa: D401
        return True

    def __getitem__(self, key: str) -> str:
        return f"arn:aws:iam::aws:policy/{key}"

    def get(self, key, default=None):  # type: ignore[override]
        return self[key]


class _PolicyLoader:
    def load(self) -> dict:
        return _AnyManagedPolicy()


def transform(template: dict) -> dict:
    """The SAM translator's output for `template` (functions' CodeUri replaced by an S3 URI,
    as `sam package` would)."""
    from samtranslator.translator.transform import transform as sam_transform

    tpl = copy.deepcopy(template)
    if "Transform" not in tpl:
        return tpl
    globals_fn = tpl.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        globals_fn["CodeUri"] = "s3://bucket/code.zip"
    for res in tpl.get("Resources", {}).values():
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
            props = res.setdefault("Properties", {})
            if "CodeUri" in props or "CodeUri" in globals_fn:
                props["CodeUri"] = "s3://bucket/code.zip"
    return sam_transform(tpl, {}, _PolicyLoader())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def strings(v: Any) -> list[str]:
    """The text a value stands for: literal strings as they are, Fn::Sub templates as written,
    other intrinsics as placeholders that name a specific resource."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [s for x in v for s in strings(x)]
    if isinstance(v, dict) and len(v) == 1:
        (k, x), = v.items()
        if k == "Fn::Sub":
            return [x if isinstance(x, str) else x[0]]
        if k == "Fn::If":
            return [s for branch in x[1:] for s in strings(branch)]
        if k == "Fn::Join":
            parts = [p if isinstance(p, str) else "${x}" for p in x[1]]
            return [x[0].join(parts)]
        if k in ("Ref", "Fn::GetAtt", "Fn::ImportValue", "Fn::Select", "Fn::FindInMap"):
            return ["${" + json.dumps(x) + "}"]
    return ["${" + json.dumps(v) + "}"]


def is_true(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def broad_resource(res: str) -> bool:
    """`*`, or an ARN whose resource part is a bare wildcard or a whole resource type."""
    if res.strip() == "*":
        return True
    # ${AWS::Region}, ${Table.Arn}: placeholders without the colons that separate ARN fields.
    res = re.sub(r"\$\{[^}]*\}", "SUB", res)
    if res.startswith("arn:"):
        parts = res.split(":", 5)
        if len(parts) == 6:
            rest = parts[5]
            if rest.startswith("*") or re.fullmatch(r"[A-Za-z0-9_-]+[/:]\*", rest):
                return True
    return False


def policy_documents(resources: dict):
    """(where, document) for every identity policy document."""
    for name, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") not in IDENTITY_POLICY_TYPES:
            continue
        props = res.get("Properties", {}) or {}
        if "PolicyDocument" in props:
            yield name, props["PolicyDocument"]
        for pol in as_list(props.get("Policies")):
            if isinstance(pol, dict) and "PolicyDocument" in pol:
                yield f"{name}/{pol.get('PolicyName', '?')}", pol["PolicyDocument"]


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def check_iam(resources: dict) -> list[Finding]:
    out: list[Finding] = []
    for where, doc in policy_documents(resources):
        if not isinstance(doc, dict):
            continue
        for i, st in enumerate(as_list(doc.get("Statement"))):
            if not isinstance(st, dict) or st.get("Effect", "Allow") != "Allow":
                continue
            at = f"{where} statement {i}"
            if "NotAction" in st:
                out.append(Finding("iam-star-action", at, "NotAction allows every other action"))
            actions = [a for a in strings(st.get("Action", []))]
            for a in actions:
                if "*" in a:
                    out.append(Finding("iam-star-action", at, f"wildcard action {a!r}"))
            if "NotResource" in st:
                out.append(Finding("iam-star-resource", at, "NotResource allows every other resource"))
            if all(a in WILDCARD_ONLY_ACTIONS for a in actions) and actions:
                continue
            for r in strings(st.get("Resource", [])):
                if broad_resource(r):
                    out.append(
                        Finding(
                            "iam-star-resource",
                            at,
                            f"resource {r!r} for {', '.join(actions)}: name the table, stream, "
                            "log group, queue or API instead",
                        )
                    )
    for name, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") not in IDENTITY_POLICY_TYPES:
            continue
        for arn in strings((res.get("Properties") or {}).get("ManagedPolicyArns", [])):
            if ":iam::aws:policy/" in arn:
                out.append(
                    Finding(
                        "iam-star-resource",
                        name,
                        f"AWS managed policy {arn.split(':policy/')[-1]} grants more than the "
                        "function uses (give the function an explicit Role with inline policies)",
                    )
                )
    return out


def check_functions(resources: dict) -> list[Finding]:
    out = []
    for name, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Lambda::Function":
            continue
        archs = (res.get("Properties") or {}).get("Architectures")
        if archs != ["arm64"]:
            shown = "none (x86_64)" if archs is None else json.dumps(archs)
            out.append(Finding("lambda-arm64", name, f"Architectures is {shown}, expected [arm64]"))
    return out


def check_tables(resources: dict) -> list[Finding]:
    out = []
    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        t = res.get("Type")
        props = res.get("Properties") or {}
        if t == "AWS::DynamoDB::Table":
            pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
            if not is_true(pitr):
                out.append(Finding("dynamodb-pitr", name, "PointInTimeRecoveryEnabled is not true"))
            ttl = props.get("TimeToLiveSpecification") or {}
            if not is_true(ttl.get("Enabled")) or not ttl.get("AttributeName"):
                out.append(Finding("dynamodb-ttl", name, "no enabled TimeToLiveSpecification"))
        elif t == "AWS::DynamoDB::GlobalTable":
            ttl = props.get("TimeToLiveSpecification") or {}
            if not is_true(ttl.get("Enabled")) or not ttl.get("AttributeName"):
                out.append(Finding("dynamodb-ttl", name, "no enabled TimeToLiveSpecification"))
            for i, rep in enumerate(as_list(props.get("Replicas"))):
                pitr = ((rep or {}).get("PointInTimeRecoverySpecification") or {}).get(
                    "PointInTimeRecoveryEnabled"
                )
                if not is_true(pitr):
                    out.append(Finding("dynamodb-pitr", f"{name} replica {i}", "PITR is not enabled"))
    return out


def check_mappings(resources: dict) -> list[Finding]:
    out = []
    for name, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        props = res.get("Properties") or {}
        if "ReportBatchItemFailures" not in as_list(props.get("FunctionResponseTypes")):
            out.append(
                Finding(
                    "esm-partial-batch",
                    name,
                    "FunctionResponseTypes lacks ReportBatchItemFailures: one bad record retries "
                    "(and re-sends) the whole batch",
                )
            )
        # Streams (DynamoDB, Kinesis, Kafka) have a StartingPosition; SQS sources do not, and
        # keep their dead letters in the queue's redrive policy instead.
        if "StartingPosition" not in props:
            continue
        dest = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if not dest:
            out.append(
                Finding("esm-on-failure", name, "no DestinationConfig.OnFailure: failed batches vanish")
            )
        if not is_true(props.get("BisectBatchOnFunctionError")):
            out.append(Finding("esm-bounded-retries", name, "BisectBatchOnFunctionError is not true"))
        for key in ("MaximumRetryAttempts", "MaximumRecordAgeInSeconds"):
            v = props.get(key)
            if v is None or str(v) == "-1":
                out.append(
                    Finding(
                        "esm-bounded-retries",
                        name,
                        f"{key} is {'absent' if v is None else v} (unbounded: a poison record "
                        "blocks its shard)",
                    )
                )
    return out


def check_parameters(parameters: dict) -> list[Finding]:
    out = []
    for name, p in (parameters or {}).items():
        if not isinstance(p, dict):
            continue
        if is_true(p.get("NoEcho")):
            if "Default" in p:
                out.append(
                    Finding("secret-default", f"Parameters/{name}", "NoEcho parameter has a Default")
                )
        # A parameter with AllowedValues (UseWebhookSecret: true/false) is a switch, not a secret.
        elif (
            SECRET_NAME.search(name)
            and p.get("Type", "String") == "String"
            and "AllowedValues" not in p
        ):
            out.append(
                Finding("secret-not-noecho", f"Parameters/{name}", "looks like a secret but is not NoEcho")
            )
    return out


def lint_transformed(transformed: dict) -> list[Finding]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(transformed), config=ManualArgs(regions=[REGION]))
    out = []
    for m in matches:
        rule_id = m.rule.id
        if not rule_id.startswith("E"):
            continue
        path = "/".join(str(p) for p in (m.path or [])[:2]) or "template"
        out.append(Finding("transformed-lint", path, f"{rule_id} {m.message}"))
    return out


def check(template: dict, with_lint: bool = True) -> list[Finding]:
    findings = check_parameters(template.get("Parameters", {}))
    try:
        transformed = transform(template)
    except Exception as e:  # the translator's own errors carry the reason
        return findings + [Finding("transform", "template", f"{type(e).__name__}: {e}")]
    resources = transformed.get("Resources", {})
    findings += check_iam(resources)
    findings += check_functions(resources)
    findings += check_tables(resources)
    findings += check_mappings(resources)
    if with_lint:
        findings += lint_transformed(transformed)
    # The same problem can show up on both sides of a cycle or in two statements: keep one.
    return sorted(set(findings), key=lambda f: (f.rule, f.where, f.message))


# --------------------------------------------------------------------------------------------
# Self-test: one mutant per rule, each must be flagged by that rule
# --------------------------------------------------------------------------------------------


def _resources(t: dict, type_: str) -> list[tuple[str, dict]]:
    found = [(n, r) for n, r in t["Resources"].items() if r.get("Type") == type_]
    if not found:
        raise LookupError(f"the template has no {type_} to mutate")
    return found


def _first_allow(t: dict) -> dict:
    for _, role in _resources(t, "AWS::IAM::Role"):
        for pol in role["Properties"].get("Policies", []):
            for st in as_list(pol["PolicyDocument"]["Statement"]):
                if st.get("Effect") == "Allow":
                    return st
    raise LookupError("no Allow statement in a role's inline policies")


def _function(t: dict) -> dict:
    return _resources(t, "AWS::Serverless::Function")[0][1]["Properties"]


def _table(t: dict) -> dict:
    return _resources(t, "AWS::DynamoDB::Table")[0][1]["Properties"]


def _esm(t: dict) -> dict:
    return _resources(t, "AWS::Lambda::EventSourceMapping")[0][1]["Properties"]


def _secret_param(t: dict) -> dict:
    for p in t.get("Parameters", {}).values():
        if is_true(p.get("NoEcho")):
            return p
    raise LookupError("no NoEcho parameter")


def _m_star_action(t):
    st = _first_allow(t)
    st["Action"] = as_list(st["Action"]) + ["dynamodb:*"]


def _m_star_resource(t):
    _first_allow(t)["Resource"] = "*"


def _m_type_wide_resource(t):
    _first_allow(t)["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"
    }


def _m_manage_connections_any_api(t):
    for _, role in _resources(t, "AWS::IAM::Role"):
        for pol in role["Properties"].get("Policies", []):
            for st in as_list(pol["PolicyDocument"]["Statement"]):
                if "execute-api:ManageConnections" in as_list(st.get("Action")):
                    st["Resource"] = {
                        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"
                    }
                    return
    raise LookupError("no execute-api:ManageConnections statement")


def _m_implicit_role(t):
    # Without a Role, SAM creates one with AWSLambdaBasicExecutionRole (logs on `*`).
    _function(t).pop("Role", None)


def _m_sam_managed_policy(t):
    fn = _function(t)
    fn.pop("Role", None)
    fn["Policies"] = ["AmazonDynamoDBFullAccess"]


def _m_x86(t):
    _function(t)["Architectures"] = ["x86_64"]


def _m_no_arch(t):
    _function(t).pop("Architectures", None)
    t.get("Globals", {}).get("Function", {}).pop("Architectures", None)


def _m_no_pitr(t):
    _table(t).pop("PointInTimeRecoverySpecification", None)


def _m_pitr_off(t):
    _table(t)["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": False}


def _m_no_ttl(t):
    _table(t).pop("TimeToLiveSpecification", None)


def _m_esm_no_destination(t):
    _esm(t).pop("DestinationConfig", None)


def _m_esm_no_partial(t):
    _esm(t).pop("FunctionResponseTypes", None)


def _m_esm_infinite_retries(t):
    _esm(t)["MaximumRetryAttempts"] = -1


def _m_esm_no_record_age(t):
    _esm(t).pop("MaximumRecordAgeInSeconds", None)


def _m_esm_no_bisect(t):
    _esm(t)["BisectBatchOnFunctionError"] = False


def _m_sam_stream_event(t):
    # The same mapping written as a SAM Events entry, without its safety settings.
    for name, res in t["Resources"].items():
        if res.get("Type") == "AWS::Lambda::EventSourceMapping":
            props = res["Properties"]
            del t["Resources"][name]
            fn = props["FunctionName"]["Ref"]
            t["Resources"][fn]["Properties"]["Events"] = {
                "Stream": {
                    "Type": "DynamoDB",
                    "Properties": {
                        "Stream": props["EventSourceArn"],
                        "StartingPosition": "LATEST",
                        "BatchSize": 10,
                    },
                }
            }
            return
    raise LookupError("no event source mapping")


def _m_secret_default(t):
    _secret_param(t)["Default"] = "changeme"


def _m_secret_not_noecho(t):
    for name, p in t.get("Parameters", {}).items():
        if is_true(p.get("NoEcho")) and SECRET_NAME.search(name):
            p.pop("NoEcho")
            return
    raise LookupError("no NoEcho parameter named like a secret")


def _m_depends_cycle(t):
    # The HTTP API waiting for a function that names it: a cycle.
    for api_name, api in _resources(t, "AWS::ApiGatewayV2::Api"):
        needle = "${" + api_name + "}"
        for fn_name, fn in _resources(t, "AWS::Serverless::Function"):
            if needle in json.dumps(fn):
                api["DependsOn"] = [fn_name]
                return
    raise LookupError("no function that refers to an ApiGatewayV2::Api")


def _m_sam_httpapi_cycle(t):
    # The trap this template avoids: a SAM HttpApi with function Events, and a function whose
    # environment names that API (PUBLIC_BASE_URL).
    t["Resources"]["TrapHttpApi"] = {"Type": "AWS::Serverless::HttpApi"}
    for fn_name, fn in _resources(t, "AWS::Serverless::Function"):
        props = fn["Properties"]
        props.setdefault("Environment", {}).setdefault("Variables", {})["TRAP_URL"] = {
            "Fn::Sub": "https://${TrapHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
        }
        props["Events"] = {
            "Trap": {
                "Type": "HttpApi",
                "Properties": {"ApiId": {"Ref": "TrapHttpApi"}, "Method": "GET", "Path": "/trap"},
            }
        }
        return


MUTANTS: list[tuple[str, Callable[[dict], None], str]] = [
    ("Action dynamodb:* added to a statement", _m_star_action, "iam-star-action"),
    ("Resource '*' on a statement", _m_star_resource, "iam-star-resource"),
    ("Resource table/* (every table) on a statement", _m_type_wide_resource, "iam-star-resource"),
    ("ManageConnections on every API of the account", _m_manage_connections_any_api, "iam-star-resource"),
    ("function without Role (SAM's AWSLambdaBasicExecutionRole)", _m_implicit_role, "iam-star-resource"),
    ("function with SAM Policies: AmazonDynamoDBFullAccess", _m_sam_managed_policy, "iam-star-resource"),
    ("function on x86_64", _m_x86, "lambda-arm64"),
    ("function without Architectures", _m_no_arch, "lambda-arm64"),
    ("table without PointInTimeRecoverySpecification", _m_no_pitr, "dynamodb-pitr"),
    ("table with PITR disabled", _m_pitr_off, "dynamodb-pitr"),
    ("table without TimeToLiveSpecification", _m_no_ttl, "dynamodb-ttl"),
    ("mapping without DestinationConfig", _m_esm_no_destination, "esm-on-failure"),
    ("mapping without ReportBatchItemFailures", _m_esm_no_partial, "esm-partial-batch"),
    ("mapping with MaximumRetryAttempts -1", _m_esm_infinite_retries, "esm-bounded-retries"),
    ("mapping without MaximumRecordAgeInSeconds", _m_esm_no_record_age, "esm-bounded-retries"),
    ("mapping without BisectBatchOnFunctionError", _m_esm_no_bisect, "esm-bounded-retries"),
    ("mapping as a bare SAM DynamoDB event", _m_sam_stream_event, "esm-on-failure"),
    ("NoEcho parameter with a Default", _m_secret_default, "secret-default"),
    ("secret parameter without NoEcho", _m_secret_not_noecho, "secret-not-noecho"),
    ("HTTP API DependsOn a function that names it", _m_depends_cycle, "transformed-lint"),
    ("SAM HttpApi Events + function naming the API", _m_sam_httpapi_cycle, "transformed-lint"),
]


def self_test(path: Path) -> int:
    template = load(path)
    failures = 0
    baseline = check(template)
    if baseline:
        print(f"FAIL  the unmutated {path.name} has findings:")
        for f in baseline:
            print(f"        {f}")
        failures += 1
    else:
        print(f"ok    unmutated {path.name}: no findings")
    for label, mutate, rule in MUTANTS:
        mutant = copy.deepcopy(template)
        try:
            mutate(mutant)
        except LookupError as e:
            print(f"FAIL  {label}: cannot build the mutant ({e})")
            failures += 1
            continue
        # cfn-lint on the transformed template is slow (~1 s); only the cycle mutants need it.
        found = check(mutant, with_lint=(rule == "transformed-lint"))
        hits = [f for f in found if f.rule == rule]
        if hits:
            print(f"ok    {label}: flagged ({hits[0]})")
        else:
            failures += 1
            print(f"FAIL  {label}: expected {rule}, got {[str(f) for f in found] or 'nothing'}")
    total = len(MUTANTS) + 1
    print(f"\nself-test: {total - failures}/{total} passed")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("template", nargs="?", default=str(ROOT / "template.yaml"))
    ap.add_argument("--self-test", action="store_true", help="check that every rule fires")
    args = ap.parse_args()
    path = Path(args.template)
    if args.self_test:
        return self_test(path)
    findings = check(load(path))
    for f in findings:
        print(f)
    if findings:
        print(f"\n{path}: {len(findings)} finding(s)")
        return 1
    print(f"{path}: project checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
