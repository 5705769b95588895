"""The router's hot path written the Powertools way, for `shop bench router`.

Reads a Kinesis event (Lambda's JSON, as herald's router receives it), then per record:
base64-decode, parse and validate the CloudEvents envelope with Powertools' parser (pydantic),
check the type against the catalog, and build the SNS PublishBatch entry (message attributes for
the filter policies) -- all inside Powertools' BatchProcessor with partial batch responses. No
network: like the Rust side, the entries are built, not sent. Prints one JSON line:
{"events": N, "seconds": S, "events_per_second": R}.

usage: python infra/bench/powertools_router.py EVENT.json [SECONDS]
"""

import base64
import json
import sys
import time
from datetime import datetime
from typing import Any, Literal, Optional

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser.models import (
    KinesisDataStreamRecord,
    KinesisDataStreamRecordPayload,
)
from pydantic import BaseModel, Field, field_validator, model_validator

CATALOG = {
    ("order_placed", 1), ("order_placed", 2), ("order_cancelled", 1),
    ("stock_reservation_failed", 1), ("payment_succeeded", 1), ("payment_failed", 1),
    ("job_failed", 1),
}


class Envelope(BaseModel):
    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    type: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    subject: Optional[str] = Field(default=None, min_length=1, max_length=256)
    time: datetime
    datacontenttype: Optional[str] = None
    dataschema: Optional[str] = None
    kind: Literal["business", "system", "data"]
    schemaversion: int = Field(ge=1)
    correlationid: str = Field(min_length=1, max_length=256)
    causationid: Optional[str] = Field(default=None, min_length=1, max_length=256)
    aggregateversion: Optional[int] = Field(default=None, ge=1)
    data: Any = None


class EnvelopePayload(KinesisDataStreamRecordPayload):
    data: Envelope
    raw: bytes = b""

    @model_validator(mode="before")
    @classmethod
    def decode(cls, values):
        # Keep the record's bytes: the router publishes them unchanged.
        raw = base64.b64decode(values["data"])
        return {**values, "data": json.loads(raw), "raw": raw}

    @field_validator("data", mode="before")
    @classmethod
    def data_base64_decode(cls, value):
        # Replaces the base model's base64 step, done above.
        return value


class EnvelopeRecord(KinesisDataStreamRecord):
    kinesis: EnvelopePayload


processor = BatchProcessor(event_type=EventType.KinesisDataStreams, model=EnvelopeRecord)
entries = []


def record_handler(record: EnvelopeRecord):
    envelope = record.kinesis.data
    if envelope.kind == "business" and envelope.subject is None:
        raise ValueError("subject is required for business events")
    if (envelope.type, envelope.schemaversion) not in CATALOG:
        raise ValueError(f"unknown type {envelope.type} v{envelope.schemaversion}")
    attributes = {
        "type": {"DataType": "String", "StringValue": envelope.type},
        "kind": {"DataType": "String", "StringValue": envelope.kind},
        "source": {"DataType": "String", "StringValue": envelope.source},
        "schemaversion": {"DataType": "Number", "StringValue": str(envelope.schemaversion)},
        "correlationid": {"DataType": "String", "StringValue": envelope.correlationid},
    }
    if envelope.aggregateversion is not None:
        attributes["aggregateversion"] = {"DataType": "Number", "StringValue": str(envelope.aggregateversion)}
    # The router publishes the record's bytes unchanged.
    entries.append({
        "Id": record.kinesis.sequenceNumber[-80:],
        "Message": record.kinesis.raw.decode(),
        "MessageAttributes": attributes,
    })


def handler(event, context=None):
    entries.clear()
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    # PublishBatch takes 10 entries per request.
    batches = [entries[i:i + 10] for i in range(0, len(entries), 10)]
    return response, batches


def main():
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    # Warm up once and check every record is accepted.
    response, batches = handler(json.loads(raw))
    records = len(json.loads(raw)["Records"])
    assert response["batchItemFailures"] == [], response
    assert sum(len(b) for b in batches) == records
    events = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        # Lambda hands the handler a freshly decoded event each invocation.
        handler(json.loads(raw))
        events += records
    elapsed = time.perf_counter() - started
    print(json.dumps({"events": events, "seconds": elapsed, "events_per_second": events / elapsed}))


if __name__ == "__main__":
    main()
