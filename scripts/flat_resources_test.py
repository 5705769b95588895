#!/usr/bin/env python3
"""template.yaml on the building blocks deploys what it deployed before, apart from the intended
changes listed below (issue 26).

Flattens the template before the rewrite (from git, `--before-rev`, or a file, `--before`) in the
new ids (scripts/shop_blocks_renames.txt) and today's template.yaml, both as
scripts/flat_resources.py prints them (SAM-translated, applications inlined, normalized), and
compares them resource by resource, property by property. Every difference must match one entry of
INTENDED; every entry must still match a difference (a stale entry fails too). The stack's outputs
must be the same values.

Usage: .venv/bin/python scripts/flat_resources_test.py [--before-rev REV | --before FILE] [-v]
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import flat_resources as flat  # noqa: E402

# The last commit whose template.yaml was written out by hand.
BEFORE_REV = "e1969a2"

SUBSCRIBERS = ["Inventory", "Payment", "Email", "Analytics", "Ops", "Compensation", "Projector"]

# (what, pattern, why). what: "added" / "removed" (a resource id), or "changed" (`Id:Path`, the
# path of a property with list indexes left out, e.g. `EmailFunction:Properties.Environment.
# Variables.OUTBOX_TABLE`). Patterns are fnmatch patterns.
INTENDED = [
    ("removed", "TopicDeliveryPolicy",
     "one queue policy for the seven subscribers' queues and dead-letter queues is now one per subscriber (the block's DeliveryPolicy), with the same statement"),
    ("added", "*DeliveryPolicy", "see TopicDeliveryPolicy"),
    ("added", "InventoryPolicy",
     "inventory's grants on its reservations as a managed policy (the block's Policy; a conditional PutItem on StockTable keys order#*, since issue 29 its own ReservationsTable); its other grants are inline as before"),
    ("changed", "InventoryFunctionRole:Properties.ManagedPolicyArns", "InventoryPolicy attached"),
    ("changed", "InventoryFunctionRole:Properties.Policies.PolicyDocument.Statement",
     "the conditional PutItem moved to InventoryPolicy (same effective grants)"),
    ("added", "ProducerHttpIntegration", "HTTP API routes of functions in applications are resources of the parent's"),
    ("added", "ProducerHttpPostRoute", "see ProducerHttpIntegration"),
    ("added", "OrderServiceHttpIntegration", "see ProducerHttpIntegration"),
    ("added", "OrderService*OrderRoute", "see ProducerHttpIntegration"),
    ("changed", "ServerlessHttpApi:Properties.Body.paths./events", "POST /events is a Route resource now"),
    ("changed", "ServerlessHttpApi:Properties.Body.paths./orders", "POST /orders is a Route resource now"),
    ("changed", "ServerlessHttpApi:Properties.Body.paths./orders/{id}/cancel", "POST /orders/{id}/cancel is a Route resource now"),
    ("changed", "*Function:Properties.Environment.Variables.*_TABLE",
     "a subscriber's own table is TABLE_NAME (the block's; crates/shop reads it)"),
    ("changed", "*Function:Properties.Environment.Variables.TABLE_NAME", "see *_TABLE"),
    ("changed", "*ThrottlesAlarm:Condition",
     "throttle alarms are optional in the blocks (ThrottlesAlarmThreshold -1 = none); the shop's threshold is at least 0, so they are always made"),
    ("changed", "*:Properties.AlarmDescription", "the blocks' wording"),
    ("changed", "OrderServicePublisher:Properties.Description", "the service block's wording"),
    ("changed", "OrderService*:Properties.AlarmName.Fn::Sub",
     "the service block names its publisher's alarms after the service (orders-publisher-errors, orders-store-stream-failures)"),
    ("changed", "Dashboard:Properties.DashboardBody.Fn::Sub",
     "the dashboard lists the publisher's alarms under their new names"),
    ("changed", "BusAlarmTopicPolicy:Properties.PolicyDocument.Statement.Sid", "the bus block's statement id"),
    ("changed", "BusEventTopicPolicy:Properties.PolicyDocument.Statement.Sid", "the bus block's statement id"),
    ("changed", "BusEventTopicPolicy:Properties.PolicyDocument.Statement.Condition.*",
     "only queues named after the stack may subscribe (ArnNotLike <stack>-*), not a list of the queues' ARNs: a nested stack's queues are named <stack>-<App>-..., and the bus cannot list the subscribers' queues"),
    ("added", "ReservationsTable",
     "issue 29: inventory's reservations apart from the stock counters (each table has its own write quota)"),
    ("added", "ReservationsTable2", "issue 29: two tables share the reservations by order id (a reservation is two write units in its transaction: one table would stop at 20 000 orders/s)"),
    ("added", "ReservationsTableThrottlesAlarm", "issue 29: every table has a throttles alarm (the sum over the two reservations tables)"),
    ("changed", "InventoryFunction:Properties.Environment.Variables.SECOND_TABLE_NAME",
     "issue 29: the reservations table, through the block's SecondTableName"),
    ("changed", "ProjectorFunctionRole:Properties.Policies.PolicyDocument.Statement.Action",
     "issue 29: orders_view writes with UpdateItem only (the timeline in the summary, the listing from ALL_NEW)"),
    ("changed", "QueryFunctionRole:Properties.Policies.PolicyDocument.Statement.Action",
     "issue 29: an order is read with one GetItem of its summary"),
    ("added", "BusIdempotencyTable[23]",
     "issue 29: three tables share the subscribers' records by key (one table's write quota was the first wall)"),
    ("changed", "BusIdempotencyTableThrottlesAlarm:Properties.Metrics", "issue 29: the sum over the three record tables"),
    ("changed", "*Function:Properties.Environment.Variables.IDEMPOTENCY_TABLE.*",
     "issue 29: a subscriber's IDEMPOTENCY_TABLE lists the three record tables"),
]+[
    ("changed", f"{subscriber}FunctionRole:Properties.Policies.PolicyDocument.Statement.Resource",
     "issue 29: a subscriber's record grants cover the three record tables (same actions, same leading keys)")
    for subscriber in ["Analytics", "Compensation", "Email", "Ops", "Payment", "Projector"]
]

# Outputs added since (name: why); every other output must keep its value.
INTENDED_OUTPUTS = {
    "ReservationsTableName": "issue 29: inventory's reservations in a table of their own",
    "ReservationsTable2Name": "issue 29: the second reservations table",
}

# Alarms the dashboard's alarm widget lists since (their names after `<stack>-`): why.
INTENDED_DASHBOARD_ALARMS = {
    "table-reservations-throttles": "issue 29: the reservations table's throttles",
}


def flattened(path, renames=None):
    """(resources, outputs) of the template, flattened and normalized, in the renamed ids."""
    resources, conditions, outputs = flat.flatten(path, os.path.dirname(os.path.abspath(path)), {})
    # The stack's outputs ride along as one more resource, so that they are renamed alike.
    resources["Outputs of the stack"] = {"Type": "Outputs", "Properties": outputs}
    if renames:
        resources = flat.renamed(resources, flat.read_renames(renames))
    outputs = flat.normalize(resources.pop("Outputs of the stack")["Properties"])
    resources, decide = flat.decided(resources, conditions)
    bodies = {rid: flat.normalize(decide.apply(flat.normalized_resource(b))) for rid, b in resources.items()}
    return flat.alarm_names_inlined(bodies), outputs


def differences(before, after):
    out = []
    for rid in sorted(set(before) - set(after)):
        out.append(("removed", rid))
    for rid in sorted(set(after) - set(before)):
        out.append(("added", rid))

    def walk(x, y, path, rid):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k, "<absent>"), y.get(k, "<absent>"), f"{path}.{k}" if path else k, rid)
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for p, q in zip(x, y):
                walk(p, q, path, rid)
        elif x != y:
            out.append(("changed", f"{rid}:{path}", x, y))

    for rid in sorted(set(before) & set(after)):
        walk(before[rid], after[rid], "", rid)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--before", help="the template before the rewrite, as a file")
    parser.add_argument("--after", default=os.path.join(ROOT, "template.yaml"))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before_path = args.before
        if before_path is None:
            before_path = os.path.join(tmp, "template.yaml")
            shown = subprocess.run(["git", "-C", ROOT, "show", f"{args.before_rev}:template.yaml"],
                                   capture_output=True, text=True)
            if shown.returncode != 0:
                # A shallow clone has no history to compare with: say so, never pass quietly.
                print(f"skipped: template.yaml of {args.before_rev} is not in this clone's "
                      f"history ({shown.stderr.strip()}); pass --before FILE")
                return
            text = shown.stdout
            with open(before_path, "w") as f:
                f.write(text)
        before, before_outputs = flattened(before_path, os.path.join(ROOT, "scripts", "shop_blocks_renames.txt"))
    after, after_outputs = flattened(args.after)

    # The stack's outputs (what herald and the shop read of a deployed stack) are the same values.
    for name in sorted(set(before_outputs) | set(after_outputs)):
        if name in INTENDED_OUTPUTS and name not in before_outputs:
            continue
        if before_outputs.get(name) != after_outputs.get(name):
            print(f"UNEXPECTED output {name}: {before_outputs.get(name)} -> {after_outputs.get(name)}")
            sys.exit(1)

    # The dashboard's only change: the publisher's alarms' new names.
    body = after.get("Dashboard", {}).get("Properties", {}).get("DashboardBody", {}).get("Fn::Sub", "")
    renamed_alarms = body.replace("-orders-publisher-", "-publisher-").replace("-orders-store-stream-", "-store-stream-")
    for alarm in INTENDED_DASHBOARD_ALARMS:
        lines = renamed_alarms.split("\n")
        kept = [line for line in lines if f":alarm:${{AWS::StackName}}-{alarm}\"" not in line]
        if len(kept) != len(lines) - 1:
            print(f"STALE intended dashboard alarm (not on the dashboard once): {alarm}")
            sys.exit(1)
        renamed_alarms = "\n".join(kept)
    if renamed_alarms != before.get("Dashboard", {}).get("Properties", {}).get("DashboardBody", {}).get("Fn::Sub"):
        print("UNEXPECTED the dashboard differs in more than the publisher's alarms' names")
        sys.exit(1)

    used = set()
    unexpected = []
    for diff in differences(before, after):
        kind, what = diff[0], diff[1]
        match = next((i for i, (k, pattern, _) in enumerate(INTENDED)
                      if k == kind and fnmatch.fnmatchcase(what, pattern)), None)
        if match is None:
            unexpected.append(diff)
        else:
            used.add(match)
            if args.verbose:
                print(f"intended: {kind} {what}")
    stale = [INTENDED[i] for i in range(len(INTENDED)) if i not in used]
    print(f"{len(before)} resources before (in the new ids), {len(after)} after")
    for diff in unexpected:
        detail = "" if len(diff) == 2 else f"\n    before: {json.dumps(diff[2])[:400]}\n    after:  {json.dumps(diff[3])[:400]}"
        print(f"UNEXPECTED {diff[0]} {diff[1]}{detail}")
    for kind, pattern, _ in stale:
        print(f"STALE intended difference (matches nothing now): {kind} {pattern}")
    if unexpected or stale:
        sys.exit(1)
    print("the same resources, apart from the intended differences")


if __name__ == "__main__":
    main()
