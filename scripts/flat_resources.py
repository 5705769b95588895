#!/usr/bin/env python3
"""The resources a SAM template deploys, as one flat set: nested local applications inlined.

Usage: flat_resources.py TEMPLATE [--props] [--param NAME=VALUE ...] [--renames FILE]

Prints one `LogicalId Type` line per resource, sorted; with --props, each line is followed by the
resource's normalized body (JSON, keys sorted) so that two templates can be diffed:

    diff <(scripts/flat_resources.py --props old.yaml) <(scripts/flat_resources.py --props new.yaml)

--renames FILE (`OLD NEW` per line) prints the template's resources under other ids, references
included, so that an old template printed in a new one's ids diffs on what changed besides names.

How: each template (the parent, and every `AWS::Serverless::Application` or
`AWS::CloudFormation::Stack` whose location is a local file) is translated on its own by
aws-sam-translator, as CloudFormation's SAM transform translates each stack of a deployment (a
child keeps its own Globals; the parent's do not reach into it). Then each child is inlined into
its parent as herald's local runner inlines it: the child's resource `Queue` under the application
`Inventory` becomes `InventoryQueue`; `!Ref Parameter` inside the child becomes the value the parent
passes (or the child's default); the parent's `!GetAtt Inventory.Outputs.X` becomes the child's
output expression, its ids prefixed. Applications nest recursively.

Normalization (--props), so that equal deployments print equally:
- a CommaDelimitedList parameter passed a `!Join [",", [...]]` (the bus's Contract) is the list
  itself, and `!Select [i, [...]]` on a literal list is its item;
- `!Sub` variables that are literals, `!Ref X` or `!GetAtt X.Y` are written into the string, and a
  `!Sub` with nothing left to substitute is the plain string;
- an SNS subscription's FilterPolicy given as a JSON string is the object it spells;
- numbers and booleans are strings (CloudFormation passes every parameter as a string);
- a function's code is `{"LocalPath": <CodeUri relative to the root template's folder>}` (the
  translator needs an S3 location; `sam build` would upload this folder);
- of a resource's Metadata, only the build's (BuildMethod, BuildProperties) is kept: lint and
  checkov exceptions are not what gets deployed;
- IAM policy statements are sorted (their order means nothing), SAM's name for a function's
  inline policy (`<Function>RolePolicy0`, which a nested stack's translation names after the
  block's own `Function`) is `RolePolicy0`, and `${SomeAlarm}` in a `!Sub` (a dashboard) is the
  alarm's name where that is a fixed string;
- a condition that the inlined values decide (a block's `HasPolicy` when the parent passes a
  policy's `!Ref`: a resource's reference is never empty) is applied: `!If` takes its branch,
  `AWS::NoValue` drops out, and a resource whose condition is false is not listed at all.
  Conditions on the root template's own parameters stay as they are.

Not modelled: `AWS::StackName` inside a child is printed as it is (on AWS it is the nested stack's
name; the blocks take the parent's as their `Stack` parameter instead), and the nested stacks
themselves (`AWS::CloudFormation::Stack`, one per application) are not listed.
"""

import argparse
import copy
import json
import logging
import os
import re
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
logging.disable(logging.WARNING)  # the translator's "unpublished metrics" notes

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

APPLICATION_TYPES = {
    "AWS::Serverless::Application": "Location",
    "AWS::CloudFormation::Stack": "TemplateURL",
}
PSEUDO = re.compile(r"^AWS::")
SUB_NAME = re.compile(r"\$\{([^}]*)\}")
MAX_DEPTH = 8


class NoManagedPolicies:
    """The translator asks for the account's managed policies; none are needed (as in
    infra/moto_server.py)."""

    def load(self):
        return {}


class Fail(Exception):
    pass


# ------------------------------------------------------------------ loading and translating


def load(path):
    with open(path) as f:
        template = yaml_parse(f.read())
    if not isinstance(template, dict):
        raise Fail(f"{path}: not a template")
    return template


def local_location(body):
    """The local file of an application resource, None for any other resource."""
    prop = APPLICATION_TYPES.get(body.get("Type"))
    if prop is None:
        return None
    location = (body.get("Properties") or {}).get(prop)
    if not isinstance(location, str) or "://" in location:
        raise Fail(f"only applications with a local template file can be flattened: {location!r}")
    return location


def literal(value):
    return isinstance(value, (str, int, float, bool))


def translate(template, root_dir, own_dir, parameter_values):
    """The template translated by aws-sam-translator. Function code is replaced by a placeholder
    S3 location and remembered as a local path relative to root_dir (resolved against own_dir,
    the template's folder, with parameter_values for `!Ref CodeUri`)."""
    template = copy.deepcopy(template)
    globals_code = ((template.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    code_paths = {}
    for rid, body in (template.get("Resources") or {}).items():
        if body.get("Type") != "AWS::Serverless::Function":
            continue
        props = body.setdefault("Properties", {})
        code = props.get("CodeUri", globals_code)
        if isinstance(code, dict) and set(code) == {"Ref"}:
            code = parameter_values.get(code["Ref"])
        if isinstance(code, str) and "://" not in code:
            code_paths[rid] = os.path.relpath(os.path.normpath(os.path.join(own_dir, code)), root_dir)
        elif code is not None:
            code_paths[rid] = code
        if props.get("InlineCode") is None and props.get("ImageUri") is None:
            props["CodeUri"] = f"s3://flat-resources-placeholder/{rid}.zip"
    values = {k: v for k, v in parameter_values.items() if literal(v)}
    try:
        out = transform(template, values, NoManagedPolicies())
    except Exception as e:  # the translator's own errors name the resource
        raise Fail(f"aws-sam-translator: {e}") from e
    for rid, path in code_paths.items():
        fn = out["Resources"].get(rid)
        if fn and fn.get("Type") == "AWS::Lambda::Function":
            fn["Properties"]["Code"] = {"LocalPath": path}
    return out


def child_parameters(child, passed, where):
    """The child's parameters: what the parent passes, else the default."""
    declared = child.get("Parameters") or {}
    values, types = {}, {}
    for name, spec in declared.items():
        if name in passed:
            values[name] = passed[name]
        elif "Default" in spec:
            values[name] = spec["Default"]
        else:
            raise Fail(f"{where}: parameter {name} has no value and no default")
        types[name] = spec.get("Type", "String")
    unknown = sorted(set(passed) - set(declared))
    if unknown:
        raise Fail(f"{where}: the application's template declares no parameter {', '.join(unknown)}")
    return values, types


def flatten(path, root_dir, parameter_values=None, depth=0):
    """The template at `path`, translated, with its local applications inlined (recursively).
    Returns (resources, conditions, outputs), CloudFormation's long form."""
    if depth > MAX_DEPTH:
        raise Fail(f"applications nest deeper than {MAX_DEPTH} levels (does one include itself?)")
    template = load(path)
    own_dir = os.path.dirname(os.path.abspath(path))
    params = dict(parameter_values or {})
    for name, spec in (template.get("Parameters") or {}).items():
        if name not in params and "Default" in spec:
            params[name] = spec["Default"]
    # Applications' locations, read before translating (the translator keeps them, but a local
    # path is ours to resolve).
    apps = {}
    for rid, body in (template.get("Resources") or {}).items():
        location = local_location(body)
        if location is not None:
            apps[rid] = os.path.normpath(os.path.join(own_dir, location))
    out = translate(template, root_dir, own_dir, params)
    resources = out.get("Resources") or {}
    conditions = out.get("Conditions") or {}
    outputs = {name: o.get("Value") for name, o in (out.get("Outputs") or {}).items()}

    app_outputs = {}
    for app_id, child_path in apps.items():
        stack = resources.pop(app_id)
        where = f"application {app_id} ({os.path.relpath(child_path, root_dir)})"
        passed = (stack.get("Properties") or {}).get("Parameters") or {}
        child = load(child_path)
        values, types = child_parameters(child, passed, where)
        literal_values = {k: v for k, v in values.items() if literal(v)}
        c_resources, c_conditions, c_outputs = flatten(child_path, root_dir, literal_values, depth + 1)
        renamer = Renamer(app_id, set(c_resources), set(c_conditions), values, types)
        for cid, body in c_resources.items():
            new_id = app_id + cid
            if new_id in resources:
                raise Fail(f"{new_id} is both a resource of the template and of {where}")
            resources[new_id] = renamer.resource(body)
        for name, expression in c_conditions.items():
            if app_id + name in conditions:
                raise Fail(f"condition {app_id + name} is both the template's and {where}'s")
            conditions[app_id + name] = renamer.rewrite(expression)
        app_outputs[app_id] = {name: renamer.rewrite(v) for name, v in c_outputs.items()}
        # DependsOn an application: on everything it holds.
        for body in resources.values():
            deps = body.get("DependsOn")
            if deps is None:
                continue
            deps = [deps] if isinstance(deps, str) else deps
            if app_id in deps:
                deps = [d for d in deps if d != app_id] + sorted(app_id + c for c in c_resources)
                body["DependsOn"] = deps

    # The parent's references to its applications' outputs (an output may pass another's on).
    for _ in range(len(apps) + 1):
        changed = [False]
        resources = replace_outputs(resources, app_outputs, changed)
        conditions = replace_outputs(conditions, app_outputs, changed)
        outputs = replace_outputs(outputs, app_outputs, changed)
        if not changed[0]:
            break
    else:
        raise Fail("the applications' outputs refer to each other in a cycle")
    return resources, conditions, outputs


# ------------------------------------------------------------------ renaming a child's ids


def sub_parts(arg):
    if isinstance(arg, str):
        return arg, {}
    if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str):
        return arg[0], dict(arg[1] or {})
    raise Fail(f"Fn::Sub of an unexpected form: {arg!r}")


def sub_value(text, variables):
    return [text, variables] if variables else text


class Renamer:
    def __init__(self, prefix, ids, conditions, values, types):
        self.prefix = prefix
        self.ids = ids
        self.conditions = conditions
        self.values = values
        self.types = types

    def parameter(self, name):
        value = self.values[name]
        if self.types.get(name, "").startswith(("CommaDelimitedList", "List<")):
            if isinstance(value, str):
                return value.split(",")
            if isinstance(value, list):
                return value
            return {"Fn::Split": [",", value]}
        return value

    def resource(self, body):
        body = copy.deepcopy(body)
        for key in ("Properties", "Metadata"):
            if key in body:
                body[key] = self.rewrite(body[key])
        if isinstance(body.get("Condition"), str):
            body["Condition"] = self.prefix + body["Condition"]
        deps = body.get("DependsOn")
        if isinstance(deps, str):
            body["DependsOn"] = self.prefix + deps
        elif isinstance(deps, list):
            body["DependsOn"] = [self.prefix + d for d in deps]
        return body

    def rewrite(self, value):
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref" and isinstance(arg, str):
                if arg in self.values:
                    return copy.deepcopy(self.parameter(arg))
                if arg in self.ids:
                    return {"Ref": self.prefix + arg}
                return value
            if key == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
                if parts and isinstance(parts[0], str) and parts[0] in self.ids:
                    parts[0] = self.prefix + parts[0]
                return {"Fn::GetAtt": [self.rewrite(p) for p in parts]}
            if key == "Fn::Sub":
                return self.rewrite_sub(arg)
            if key == "Condition" and isinstance(arg, str) and arg in self.conditions:
                return {"Condition": self.prefix + arg}
            if key == "Fn::If" and isinstance(arg, list) and arg:
                parts = [self.rewrite(p) for p in arg]
                if isinstance(parts[0], str) and parts[0] in self.conditions:
                    parts[0] = self.prefix + parts[0]
                return {"Fn::If": parts}
            return {key: self.rewrite(arg)}
        return {k: self.rewrite(v) for k, v in value.items()}

    def rewrite_sub(self, arg):
        text, variables = sub_parts(arg)
        own = set(variables)
        variables = {k: self.rewrite(v) for k, v in variables.items()}

        def name(match):
            inner = match.group(1)
            if inner.startswith("!"):
                return match.group(0)
            head = inner.split(".", 1)[0]
            if inner not in own and inner in self.values:
                variables[inner] = copy.deepcopy(self.parameter(inner))
                return match.group(0)
            if head not in own and head in self.ids:
                return "${" + self.prefix + inner + "}"
            return match.group(0)

        return {"Fn::Sub": sub_value(SUB_NAME.sub(name, text), variables)}


def replace_outputs(value, app_outputs, changed):
    if isinstance(value, list):
        return [replace_outputs(v, app_outputs, changed) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        key, arg = next(iter(value.items()))
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else arg
            if len(parts) == 2 and parts[0] in app_outputs and str(parts[1]).startswith("Outputs."):
                name = parts[1][len("Outputs."):]
                if name not in app_outputs[parts[0]]:
                    raise Fail(f"application {parts[0]} has no output {name}")
                changed[0] = True
                return copy.deepcopy(app_outputs[parts[0]][name])
        if key == "Fn::Sub":
            text, variables = sub_parts(arg)
            variables = {k: replace_outputs(v, app_outputs, changed) for k, v in variables.items()}
            for inner in SUB_NAME.findall(text):
                parts = inner.split(".", 2)
                if inner in variables or len(parts) != 3 or parts[1] != "Outputs":
                    continue
                if parts[0] in app_outputs:
                    if parts[2] not in app_outputs[parts[0]]:
                        raise Fail(f"application {parts[0]} has no output {parts[2]}")
                    variables[inner] = copy.deepcopy(app_outputs[parts[0]][parts[2]])
                    changed[0] = True
            return {"Fn::Sub": sub_value(text, variables)}
    return {k: replace_outputs(v, app_outputs, changed) for k, v in value.items()}


# ------------------------------------------------------------------ normalization


SAM_POLICY_NAME = re.compile(r"^[A-Za-z0-9]*RolePolicy(\d+)$")


def normalize(value, key=None):
    if key == "Statement" and isinstance(value, list):
        return sorted((normalize(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if key == "PolicyName" and isinstance(value, str) and SAM_POLICY_NAME.match(value):
        return "RolePolicy" + SAM_POLICY_NAME.match(value).group(1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: normalize(v, k) for k, v in value.items()}
    if len(value) != 1:
        return value
    key, arg = next(iter(value.items()))
    if key == "Fn::Split" and isinstance(arg, list) and len(arg) == 2:
        delimiter, source = arg
        if isinstance(source, str):
            return source.split(delimiter)
        join = source.get("Fn::Join") if isinstance(source, dict) and len(source) == 1 else None
        if join and join[0] == delimiter and isinstance(join[1], list):
            items = join[1]
            if all(not (isinstance(i, str) and delimiter in i) for i in items):
                return items
    if key == "Fn::Select" and isinstance(arg, list) and len(arg) == 2:
        index, items = arg
        if isinstance(items, list) and str(index).isdigit() and int(index) < len(items):
            return items[int(index)]
    if key == "Fn::Sub":
        text, variables = sub_parts(arg)
        kept = {}
        for name, v in variables.items():
            if isinstance(v, str):
                replacement = v.replace("${", "${!")
            elif isinstance(v, dict) and set(v) == {"Ref"} and isinstance(v["Ref"], str):
                replacement = "${" + v["Ref"] + "}"
            elif (
                isinstance(v, dict)
                and set(v) == {"Fn::GetAtt"}
                and isinstance(v["Fn::GetAtt"], list)
                and all(isinstance(p, str) for p in v["Fn::GetAtt"])
            ):
                replacement = "${" + ".".join(v["Fn::GetAtt"]) + "}"
            else:
                kept[name] = v
                continue
            text = text.replace("${" + name + "}", replacement)
        if not kept and not any(not n.startswith("!") for n in SUB_NAME.findall(text)):
            return text.replace("${!", "${")
        return {"Fn::Sub": sub_value(text, kept)}
    return value


NO_VALUE = {"Ref": "AWS::NoValue"}


class Conditions:
    """Conditions decided where the values are known; None where they are not."""

    def __init__(self, conditions, resource_ids):
        self.expressions = {k: normalize(v) for k, v in conditions.items()}
        self.ids = resource_ids
        self.cache = {}

    def value(self, name):
        if name not in self.cache:
            self.cache[name] = None  # a cycle stays undecided
            expression = self.expressions.get(name)
            self.cache[name] = None if expression is None else self.decide(expression)
        return self.cache[name]

    def is_resource(self, v):
        if not isinstance(v, dict) or len(v) != 1:
            return False
        (key, arg), = v.items()
        if key == "Ref":
            return arg in self.ids
        if key == "Fn::GetAtt":
            return isinstance(arg, list) and arg and arg[0] in self.ids
        return False

    def decide(self, e):
        if not isinstance(e, dict) or len(e) != 1:
            return None
        (key, arg), = e.items()
        if key == "Condition":
            return self.value(arg)
        if key == "Fn::Equals":
            a, b = arg
            if isinstance(a, str) and isinstance(b, str):
                return a == b
            if (a == "" and self.is_resource(b)) or (b == "" and self.is_resource(a)):
                return False
            return None
        if key == "Fn::Not":
            v = self.decide(arg[0])
            return None if v is None else not v
        if key in ("Fn::And", "Fn::Or"):
            vs = [self.decide(x) for x in arg]
            if key == "Fn::And":
                return False if False in vs else (True if all(v is True for v in vs) else None)
            return True if True in vs else (False if all(v is False for v in vs) else None)
        return None

    def apply(self, value):
        if isinstance(value, list):
            out = [self.apply(v) for v in value]
            return [v for v in out if v != NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            decided = self.value(name)
            if decided is not None:
                return self.apply(yes if decided else no)
        out = {k: self.apply(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v != NO_VALUE}


def decided(resources, conditions):
    """The resources as deployed where the conditions are decided."""
    decide = Conditions(conditions, set(resources))
    out = {}
    for rid, body in resources.items():
        body = dict(body)
        name = body.get("Condition")
        if name is not None:
            v = decide.value(name)
            if v is False:
                continue
            if v is True:
                del body["Condition"]
        out[rid] = body
    return out, decide


def parse_json_strings(properties):
    """An SNS filter policy written as a JSON string (a block's parameter) is the same object."""
    policy = properties.get("FilterPolicy") if isinstance(properties, dict) else None
    if isinstance(policy, str):
        try:
            properties = dict(properties, FilterPolicy=json.loads(policy))
        except ValueError:
            pass
    return properties


def normalized_resource(body):
    body = dict(body)
    if "Properties" in body:
        body["Properties"] = parse_json_strings(body["Properties"])
    out = {}
    for key in ("Type", "Condition", "DeletionPolicy", "UpdateReplacePolicy", "Properties"):
        if key in body:
            out[key] = body[key]
    deps = body.get("DependsOn")
    if deps is not None:
        out["DependsOn"] = sorted([deps] if isinstance(deps, str) else deps)
    build = {k: v for k, v in (body.get("Metadata") or {}).items() if k.startswith("Build")}
    if build:
        out["Metadata"] = build
    return normalize(out)


def renamed(resources, renames):
    """The resources with ids renamed (`renames`: old id -> new id), references included: to
    print an old template in a new one's ids, so that a diff shows what changed besides names."""

    def name(rid):
        return renames.get(rid, rid)

    def walk(value):
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref" and isinstance(arg, str):
                return {"Ref": name(arg)}
            if key == "Fn::GetAtt" and isinstance(arg, list) and arg and isinstance(arg[0], str):
                return {"Fn::GetAtt": [name(arg[0])] + [walk(a) for a in arg[1:]]}
            if key == "Fn::Sub":
                text, variables = sub_parts(arg)

                def sub(match):
                    inner = match.group(1)
                    if inner.startswith("!") or inner in variables:
                        return match.group(0)
                    head, dot, rest = inner.partition(".")
                    return "${" + name(head) + dot + rest + "}"

                return {"Fn::Sub": sub_value(SUB_NAME.sub(sub, text), walk(variables))}
        return {k: walk(v) for k, v in value.items()}

    out = {}
    for rid, body in resources.items():
        body = dict(body)
        if "Properties" in body:
            body["Properties"] = walk(body["Properties"])
        deps = body.get("DependsOn")
        if deps is not None:
            body["DependsOn"] = [name(d) for d in ([deps] if isinstance(deps, str) else deps)]
        if name(rid) in out:
            raise Fail(f"renaming {rid} to {name(rid)}: that id is taken")
        out[name(rid)] = body
    return out


def read_renames(path):
    renames = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if line:
                if len(line) != 2:
                    raise Fail(f"{path}: `OLD NEW` per line, not {' '.join(line)}")
                renames[line[0]] = line[1]
    return renames


def alarm_names_inlined(bodies):
    """`${Alarm}` in a `!Sub` (a dashboard listing alarms) is the alarm's name, where that name is
    a plain string or a `!Sub` of nothing but pseudo parameters: the same text however it is
    referred to."""
    names = {}
    for rid, body in bodies.items():
        if body.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        name = (body.get("Properties") or {}).get("AlarmName")
        if isinstance(name, dict) and set(name) == {"Fn::Sub"} and isinstance(name["Fn::Sub"], str):
            name = name["Fn::Sub"]
        if isinstance(name, str) and all(n.startswith(("AWS::", "!")) for n in SUB_NAME.findall(name)):
            names[rid] = name

    def walk(value):
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::Sub"}:
            text, variables = sub_parts(value["Fn::Sub"])
            text = SUB_NAME.sub(
                lambda m: names[m.group(1)] if m.group(1) in names and m.group(1) not in variables else m.group(0),
                text,
            )
            return {"Fn::Sub": sub_value(text, walk(variables))}
        return {k: walk(v) for k, v in value.items()}

    return {rid: walk(body) for rid, body in bodies.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template")
    parser.add_argument("--props", action="store_true", help="print each resource's normalized body too")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter value of the root template (default: its Default)")
    parser.add_argument("--renames", metavar="FILE",
                        help="print resources under new ids: `OLD NEW` per line (# comments)")
    args = parser.parse_args()
    root_dir = os.path.dirname(os.path.abspath(args.template))
    params = dict(p.split("=", 1) for p in args.param)
    try:
        resources, conditions, _outputs = flatten(args.template, root_dir, params)
        if args.renames:
            resources = renamed(resources, read_renames(args.renames))
    except Fail as e:
        sys.exit(f"flat_resources: {e}")
    resources, decide = decided(resources, conditions)
    # Normalized again once the conditions are applied (a statement under `!If` sorts as itself).
    bodies = alarm_names_inlined(
        {rid: normalize(decide.apply(normalized_resource(b))) for rid, b in resources.items()}
    )
    for rid in sorted(resources):
        print(rid, resources[rid].get("Type"))
        if args.props:
            print("    " + json.dumps(bodies[rid], sort_keys=True))


if __name__ == "__main__":
    main()
