#!/usr/bin/env python3
"""Writes the CloudFormation JSON that SAM makes of a SAM template, offline.

    sam_transform.py TEMPLATE OUT.json

scripts/check-template runs the Guard rules (infra/guard/) and cfn-lint on this output, so they
see what SAM adds on its own: Globals merged into each function, the role and AWS managed
policy SAM gives a function without a Role, the event source mappings it makes of stream
Events, the OpenAPI body (and so the dependencies) of an AWS::Serverless::HttpApi.

The template is read with cfn-lint's YAML loader (it understands !Ref, !Sub, !GetAtt, ...) and
transformed with the SAM translator (the `samtranslator` package that aws-sam-cli installs,
the same translator CloudFormation's AWS::Serverless transform runs). Two things the service
would look up are stubbed, so that no AWS call and no credentials are needed:
  * the managed-policy map (a function's `Policies: [SomePolicyName]`): every name resolves to
    arn:aws:iam::aws:policy/<name>, so the policy shows up in the output, where the rules flag it;
  * code locations: each function's CodeUri becomes s3://bucket/code.zip, as `sam package`
    would make it.
Exit status 1, with the translator's reason, when SAM rejects the template.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
# The translator warns about its internal metrics on every run; that is not about the template.
logging.getLogger("samtranslator").setLevel(logging.ERROR)


class _AnyManagedPolicy(dict):
    """Every managed policy name resolves (to an AWS managed policy ARN)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"arn:aws:iam::aws:policy/{key}"

    def get(self, key, default=None):  # type: ignore[override]
        return self[key]


class _PolicyLoader:
    def load(self) -> dict:
        return _AnyManagedPolicy()


def load(path: str) -> dict:
    from cfnlint.decode import decode

    template, matches = decode(path)
    if matches or template is None:
        for m in matches or []:
            print(f"{path}: {m}", file=sys.stderr)
        raise SystemExit(f"{path}: cannot be parsed")
    # cfn-lint's nodes (dict/str subclasses with line marks) as plain JSON values.
    return json.loads(json.dumps(template))


def transform(template: dict) -> dict:
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


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    src, out = sys.argv[1:]
    try:
        transformed = transform(load(src))
    except Exception as e:  # the translator's own errors carry the reason
        print(f"{src}: the SAM transform rejects the template: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as f:
        json.dump(transformed, f, indent=1, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
