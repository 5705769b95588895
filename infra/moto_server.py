"""moto server, one request at a time.

moto's backends are not thread-safe: two concurrent `UpdateItem ... ADD count :1` on one item can
lose an increment, and two conditional `PutItem`s can both succeed. Real DynamoDB applies each
request atomically, and herald's exactly-once guarantees rest on that, so this launcher serialises
request handling (connections are still accepted concurrently).

It also makes TransactWriteItems cost what the transaction touches rather than what its tables
hold (see `item_level_rollback`), reshards Kinesis streams as AWS does (see
`resharding_as_on_aws`), takes out per-request costs that grow with the load rather than with
the work (see `cheaper_requests`), and gives its CloudFormation the resources a deployed herald
stack has and moto's leaves out (see `cloudformation_as_on_aws`) and the SAM transform
CloudFormation runs itself (see `sam_transform_as_on_aws`), with nested stacks' outputs (see
`nested_stacks_as_on_aws`).

Usage: python infra/moto_server.py [-H host] [-p port]
"""

import argparse
import json
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


# Held while moto handles a request: one at a time (released only by a long poll's wait, see
# `long_polls_wait_unlocked`).
SERIAL = threading.Lock()

# The connection of the request this thread handles (a long poll checks that its client is
# still there).
CURRENT = threading.local()


def serialized(app):
    def handle(environ, start_response):
        CURRENT.socket = environ.get("werkzeug.socket")
        with SERIAL:
            # Materialise the body inside the lock: the response is computed lazily otherwise.
            return list(app(environ, start_response))

    return handle


def item_level_rollback():
    """moto rolls a cancelled TransactWriteItems back by deep-copying, before every transaction,
    each table the transaction touches. With a few thousand items (an idempotency table after a
    demo) that copy costs tens of milliseconds, growing with the table: the local pipeline slowed
    to a few events per second. Snapshot only the items the transaction names instead, and on
    failure put exactly those back (and drop the stream records the partial writes added). moto's
    checks and writes run as they are; only its table copies are skipped."""
    import copy

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = models.DynamoDBBackend.transact_write_items

    class NoTableCopies:
        """Stands in for the `copy` module while moto's transaction runs: tables are not copied
        (the item snapshot above replaces that); everything else is copied as before (an update
        still keeps its old image for the stream)."""

        @staticmethod
        def deepcopy(value, memo=None):
            if isinstance(value, models.Table):
                return value
            return copy.deepcopy(value, memo)

    def snapshot(backend, transact_items):
        touched, streams = [], {}
        for entry in transact_items:
            if len(entry) != 1:
                continue  # moto rejects it before writing anything
            op = next(iter(entry.values()))
            table = backend.tables.get(op.get("TableName"))
            key = op.get("Item") or op.get("Key") or {}
            if table is None or table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = None
            if table.range_key_attr and table.range_key_attr in key:
                range_key = DynamoType(key[table.range_key_attr])
            touched.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
            if table.stream_shard is not None:
                streams.setdefault(id(table), (table, len(table.stream_shard.items)))
        return touched, streams

    def restore(touched, streams):
        for table, hash_key, range_key, item in reversed(touched):
            place = table.items[hash_key] if range_key is not None else table.items
            slot = range_key if range_key is not None else hash_key
            if item is None:
                place.pop(slot, None)
            else:
                place[slot] = item
        for table, length in streams.values():
            del table.stream_shard.items[length:]

    def transact_write_items(self, transact_items):
        touched, streams = snapshot(self, transact_items)
        saved = models.copy
        models.copy = NoTableCopies
        try:
            return original(self, transact_items)
        except BaseException:
            restore(touched, streams)
            raise
        finally:
            models.copy = saved

    models.DynamoDBBackend.transact_write_items = transact_write_items


def resharding_as_on_aws():
    """moto's SplitShard/MergeShards/UpdateShardCount close the parent shards but keep routing
    writes to them (the parent is still the first shard whose hash range matches) and re-put the
    parents' records under new sequence numbers. On AWS a closed shard takes no more writes (they
    go to the child shards) and keeps its records, readable until its retention ends, so a
    consumer drains the parent before reading the children. Route writes to open shards only and
    leave the parents' records where they were. And as AWS does, a closed shard's iterator ends
    (no `NextShardIterator`) with the answer that holds its last records; moto's never ends."""
    from moto.kinesis import models
    from moto.kinesis.utils import decompose_shard_iterator

    def get_shard_for_key(self, partition_key, explicit_hash_key):
        if not isinstance(partition_key, str) or len(partition_key) > 256:
            raise models.InvalidArgumentError("partition_key")
        if explicit_hash_key:
            int_key = int(explicit_hash_key)
            if int_key >= 2**128:
                raise models.InvalidArgumentError("explicit_hash_key")
        else:
            int_key = int(models.md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
        for shard in self.shards.values():
            if shard.is_open and shard.starting_hash <= int_key <= shard.ending_hash:
                return shard
        return None

    def keeping_records(original, *names):
        def reshard(self, *args):
            shards = [self.shards[arg] for arg in args[: len(names)] if arg in self.shards]
            saved = [(shard, shard.records) for shard in shards]
            for shard in shards:
                shard.records = models.OrderedDict()
            try:
                return original(self, *args)
            finally:
                for shard, records in saved:
                    shard.records = records

        return reshard

    get_records = models.KinesisBackend.get_records

    def get_records_as_on_aws(self, stream_arn, shard_iterator, limit):
        next_iterator, records, behind = get_records(self, stream_arn, shard_iterator, limit)
        stream_name, shard_id, _ = decompose_shard_iterator(shard_iterator)
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        shard = stream.get_shard(shard_id)
        read_to = int(decompose_shard_iterator(next_iterator)[2])
        if not shard.is_open and read_to >= shard.get_max_sequence_number():
            next_iterator = None
        return next_iterator, records, behind

    models.KinesisBackend.get_records = get_records_as_on_aws
    models.Stream.get_shard_for_key = get_shard_for_key
    models.Stream.split_shard = keeping_records(models.Stream.split_shard, "shard_to_split")
    models.Stream.merge_shards = keeping_records(
        models.Stream.merge_shards, "shard_to_merge", "adjacent_shard_to_merge"
    )


def cheaper_requests():
    """Measured under load (`shop bench pipeline`, cProfile around the handler): a fifth of moto's
    time went to finding the service of each request, which lists moto's package directory on
    disk every time, and more to listing the response class's methods (`inspect.getmembers`) to
    find the action's; and SQS spent more than a third of it reading the clock, through a datetime
    round trip, once per message for every message in a queue, several times per request
    (visibility and delay checks, the approximate counts behind every attribute lookup, and a
    retention check per message received that computes all of the queue's attributes three
    times). The module list and each response class's methods are read once, the clock is
    `time.time()`, and the retention check reads the one attribute it needs. Answers are
    unchanged."""
    import functools
    import time

    from moto import backends
    from moto.core import responses, utils
    from moto.sqs import models

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    all_method_names = responses.method_names_from_class

    @functools.lru_cache(maxsize=None)
    def method_names_from_class(cls):
        return frozenset(all_method_names(cls))

    responses.method_names_from_class = method_names_from_class

    def unix_time(dt=None):
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt=None):
        return unix_time(dt) * 1000.0

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > time.time()

    models.SQSBackend.is_message_valid_based_on_retention_period = (
        is_message_valid_based_on_retention_period
    )


def long_polls_wait_unlocked():
    """An SQS ReceiveMessage with WaitTimeSeconds waits in moto for a message to arrive; under the
    serialisation above it would hold every other request up meanwhile, and the message it waits
    for could never be sent. The wait releases the lock (it has changed nothing yet: moto waits
    only when it found nothing to return), and moto scans the queue again under the lock. It
    wakes at once for a new message and every tenth of a second otherwise, so a message whose
    visibility timeout ends is received as soon as a short poll would have.

    A poll whose client has gone (a runner stopped mid-poll) ends there: otherwise it would still
    take the next message, and hide it from every consumer for its visibility timeout."""
    import socket

    from moto.sqs import models

    def client_gone():
        connection = getattr(CURRENT, "socket", None)
        if connection is None:
            return False
        try:
            return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def wait_for_messages(self, timeout):
        SERIAL.release()
        try:
            with self._messages_lock:
                self._messages_lock.wait_for(lambda: self.messages, timeout=min(timeout, 0.1))
        finally:
            SERIAL.acquire()
        if client_gone():
            raise ConnectionAbortedError("the long poll's client has gone")

    models.Queue.wait_for_messages = wait_for_messages


def cloudformation_as_on_aws():
    """moto's CloudFormation leaves out CloudWatch alarms, SNS subscriptions, Firehose delivery
    streams and Lambda Function URLs (a stack it creates has none), and creates DynamoDB tables without the TTL or point-in-time recovery their
    properties ask for. AWS creates all of them, and a deployed stack's health (`herald doctor`)
    and fan-out depend on them: this adds the four resource types and applies the two table
    settings, through the same backends moto's own APIs use."""
    from moto.cloudformation import parsing
    from moto.cloudwatch import models as cloudwatch
    from moto.core.common_models import CloudFormationModel
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.table import Table
    from moto.awslambda.models import lambda_backends
    from moto.firehose.models import firehose_backends
    from moto.sns.models import sns_backends

    # A dimension whose value refers to what moto cannot create (the HTTP API) resolves to nothing.
    def dimensions(items):
        return [cloudwatch.Dimension(name=d["Name"], value=d.get("Value", "")) for d in items or []]

    def queries(metrics):
        out = []
        for metric in metrics or []:
            stat = metric.get("MetricStat")
            metric_stat = None
            if stat:
                metric_stat = cloudwatch.MetricStat(
                    metric=cloudwatch.Metric(
                        metric_name=stat["Metric"].get("MetricName"),
                        namespace=stat["Metric"].get("Namespace"),
                        dimensions=dimensions(stat["Metric"].get("Dimensions")),
                    ),
                    period=stat.get("Period"),
                    stat=stat.get("Stat"),
                    unit=stat.get("Unit"),
                )
            out.append(
                cloudwatch.MetricDataQuery(
                    query_id=metric.get("Id"),
                    label=metric.get("Label"),
                    period=metric.get("Period"),
                    return_data=metric.get("ReturnData"),
                    expression=metric.get("Expression"),
                    metric_stat=metric_stat,
                )
            )
        return out or None

    class StackAlarm(CloudFormationModel):
        # moto files every model under the service its module names.
        __module__ = "moto.cloudwatch.models"

        def __init__(self, name):
            self.name = name

        @staticmethod
        def cloudformation_name_type():
            return "AlarmName"

        @staticmethod
        def cloudformation_type():
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json["Properties"]
            cloudwatch.cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=resource_name,
                namespace=p.get("Namespace"),
                metric_name=p.get("MetricName"),
                metric_data_queries=queries(p.get("Metrics")),
                comparison_operator=p.get("ComparisonOperator"),
                evaluation_periods=p.get("EvaluationPeriods"),
                datapoints_to_alarm=p.get("DatapointsToAlarm"),
                period=p.get("Period"),
                threshold=p.get("Threshold"),
                statistic=p.get("Statistic"),
                extended_statistic=p.get("ExtendedStatistic"),
                description=p.get("AlarmDescription"),
                dimensions=[
                    {"Name": d["Name"], "Value": d.get("Value", "")} for d in p.get("Dimensions") or []
                ],
                alarm_actions=p.get("AlarmActions") or [],
                ok_actions=p.get("OKActions") or [],
                insufficient_data_actions=p.get("InsufficientDataActions") or [],
                unit=p.get("Unit"),
                actions_enabled=p.get("ActionsEnabled", True),
                treat_missing_data=p.get("TreatMissingData"),
            )
            return cls(resource_name)

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name
        ):
            cloudwatch.cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

        @property
        def physical_resource_id(self):
            return self.name

    class StackSubscription(CloudFormationModel):
        __module__ = "moto.sns.models"

        def __init__(self, arn):
            self.arn = arn

        @staticmethod
        def cloudformation_type():
            return "AWS::SNS::Subscription"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json["Properties"]
            sns = sns_backends[account_id][region_name]
            subscription = sns.subscribe(p["TopicArn"], p["Endpoint"], p["Protocol"])
            for name in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy"):
                if name in p:
                    value = p[name]
                    if isinstance(value, (dict, list)):
                        value = json.dumps(value)
                    elif isinstance(value, bool):
                        value = "true" if value else "false"
                    sns.set_subscription_attributes(subscription.arn, name, value)
            return cls(subscription.arn)

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name
        ):
            sns_backends[account_id][region_name].unsubscribe(resource_name)

        @property
        def physical_resource_id(self):
            return self.arn

    class StackDeliveryStream(CloudFormationModel):
        __module__ = "moto.firehose.models"

        def __init__(self, name):
            self.name = name

        @staticmethod
        def cloudformation_name_type():
            return "DeliveryStreamName"

        @staticmethod
        def cloudformation_type():
            return "AWS::KinesisFirehose::DeliveryStream"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json["Properties"]
            firehose_backends[account_id][region_name].create_delivery_stream(
                region=region_name,
                delivery_stream_name=resource_name,
                delivery_stream_type=p.get("DeliveryStreamType", "DirectPut"),
                kinesis_stream_source_configuration=p.get("KinesisStreamSourceConfiguration"),
                delivery_stream_encryption_configuration_input=None,
                s3_destination_configuration=p.get("S3DestinationConfiguration"),
                extended_s3_destination_configuration=p.get("ExtendedS3DestinationConfiguration"),
                redshift_destination_configuration=None,
                elasticsearch_destination_configuration=None,
                splunk_destination_configuration=None,
                http_endpoint_destination_configuration=None,
                snowflake_destination_configuration=None,
                iceberg_destination_configuration=None,
                tags=p.get("Tags") or [],
            )
            return cls(resource_name)

        @classmethod
        def delete_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name
        ):
            firehose_backends[account_id][region_name].delete_delivery_stream(resource_name)

        @property
        def physical_resource_id(self):
            return self.name

    class StackFunctionUrl(CloudFormationModel):
        __module__ = "moto.awslambda.models"

        def __init__(self, function_arn, url):
            self.function_arn = function_arn
            self.url = url

        @staticmethod
        def cloudformation_type():
            return "AWS::Lambda::Url"

        @classmethod
        def has_cfn_attr(cls, attr):
            return attr in ("FunctionArn", "FunctionUrl")

        def get_cfn_attribute(self, attribute_name):
            return self.url if attribute_name == "FunctionUrl" else self.function_arn

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        ):
            p = cloudformation_json["Properties"]
            config = lambda_backends[account_id][region_name].create_function_url_config(
                p["TargetFunctionArn"], {k: v for k, v in p.items() if k != "TargetFunctionArn"}
            )
            return cls(config.function.function_arn, config.url)

        @property
        def physical_resource_id(self):
            # `Ref` of a Function URL is the function's ARN.
            return self.function_arn

    create_table = Table.create_from_cloudformation_json.__func__

    def create_table_as_on_aws(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        table = create_table(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        p = cloudformation_json["Properties"]
        backend = dynamodb_backends[account_id][region_name]
        ttl = p.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled")).lower() == "true":
            backend.update_time_to_live(
                table.name, {"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )
        pitr = p.get("PointInTimeRecoverySpecification")
        if pitr and str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
            backend.update_continuous_backups(table.name, {"PointInTimeRecoveryEnabled": True})
        return table

    Table.create_from_cloudformation_json = classmethod(create_table_as_on_aws)
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


class NoManagedPolicies:
    """aws-sam-translator asks for the account's managed policies; none are needed here."""

    def load(self):
        return {}


def sam_transform_as_on_aws():
    """CloudFormation runs the SAM transform itself: `sam deploy` sends the template as written
    (`Transform: AWS::Serverless-2016-10-31`), and `GetTemplate` gives it back as it was (stage
    `Original`, the default) or transformed (`Processed`). moto ignores transforms; this runs the
    translator SAM itself uses (aws-sam-translator, pinned in infra/requirements.txt) where
    CloudFormation would, and keeps both."""
    from moto.cloudformation import models, responses
    from moto.core.responses import ActionResult

    originals = {}  # stack id -> the template as sent
    create_stack = models.CloudFormationBackend.create_stack

    def create_stack_as_on_aws(self, name, template, parameters, *args, **kwargs):
        from samtranslator.yaml_helper import yaml_parse

        body = yaml_parse(template) if isinstance(template, str) else template
        transforms = body.get("Transform") if isinstance(body, dict) else None
        if transforms == "AWS::Serverless-2016-10-31" or (
            isinstance(transforms, list) and "AWS::Serverless-2016-10-31" in transforms
        ):
            from samtranslator.translator.transform import transform

            # The translator reads the region from the environment, as SAM's own runs do.
            os.environ["AWS_DEFAULT_REGION"] = self.region_name
            processed = json.dumps(transform(body, dict(parameters or {}), NoManagedPolicies()))
            stack = create_stack(self, name, processed, parameters, *args, **kwargs)
            originals[stack.stack_id] = template
            return stack
        return create_stack(self, name, template, parameters, *args, **kwargs)

    models.CloudFormationBackend.create_stack = create_stack_as_on_aws
    get_template = responses.CloudFormationResponse.get_template

    def get_template_as_on_aws(self):
        stage = self._get_param("TemplateStage") or "Original"
        stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
        if stage == "Original" and stack.stack_id in originals:
            return ActionResult({"TemplateBody": originals[stack.stack_id]})
        return get_template(self)

    responses.CloudFormationResponse.get_template = get_template_as_on_aws


def nested_stacks_as_on_aws():
    """A parent reads a nested stack's outputs as `!GetAtt App.Outputs.Name` or
    `${App.Outputs.Name}` in a `!Sub` (what the SAM building blocks hand each other, e.g. the
    bus's `Contract`); moto's stack resource answers no attribute, and its `!Sub` splits the name
    at every dot. This gives each output's value, and names the one a nested stack lacks."""
    from moto.cloudformation import models, parsing

    clean_json = parsing.clean_json

    def clean_json_as_on_aws(resource_json, resources_map):
        parts = resource_json.get("Fn::GetAtt") if isinstance(resource_json, dict) else None
        if isinstance(parts, list) and len(parts) > 2:
            resource_json = {"Fn::GetAtt": [parts[0], ".".join(parts[1:])]}
        return clean_json(resource_json, resources_map)

    # Its recursive calls look the name up in the module, so they come here too.
    parsing.clean_json = clean_json_as_on_aws

    def get_cfn_attribute(self, attribute_name):
        name = attribute_name.removeprefix("Outputs.")
        for output in self.output_map.values():
            if output.key == name:
                return output.value
        raise KeyError(f"nested stack {self.name} has no output {name}")

    models.Stack.get_cfn_attribute = get_cfn_attribute


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5050)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    item_level_rollback()
    resharding_as_on_aws()
    cheaper_requests()
    long_polls_wait_unlocked()
    cloudformation_as_on_aws()
    sam_transform_as_on_aws()
    nested_stacks_as_on_aws()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
