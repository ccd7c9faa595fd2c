"""A minimal Faust worker for test_faust_codec: copies one topic to another through
``AvroSchema``, with dead letters. Configured by the PROBE_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import faust

from sislms.wiring import Kernel
from streams.catalog import load_catalog
from streams.dlq import DeadLetterPublisher
from streams.faust_codec import AvroSchema, live
from streams.serde import Serdes
from streams.settings import Settings

settings = Settings()
kernel = Kernel(settings)
catalog = load_catalog(Path(os.environ["PROBE_TOPOLOGY"]), Path(os.environ["PROBE_SCHEMAS"]))
serdes = Serdes(kernel.registry, catalog)
dead_letters = DeadLetterPublisher(kernel.producer(), serdes, catalog)
IN, OUT, STAGE = os.environ["PROBE_IN"], os.environ["PROBE_OUT"], os.environ["PROBE_STAGE"]

app = faust.App(
    os.environ["PROBE_APP_ID"],
    broker=f"kafka://{kernel.endpoints.kafka_bootstrap}",
    store="memory://",
    datadir=os.environ["PROBE_DATA_DIR"],  # not <app id>-data in the checkout
    web_enabled=False,
    topic_replication_factor=1,
    producer_acks=-1,
)
source = app.topic(IN, schema=AvroSchema(serdes[IN], dead_letters, STAGE))
sink = app.topic(OUT, schema=AvroSchema(serdes[OUT], dead_letters, STAGE))


@app.agent(source, concurrency=1)
async def copy(stream):  # type: ignore[no-untyped-def]
    async for event in live(stream):
        value = event.value
        if value is not None:
            value = {**value, "familyName": value["familyName"].upper()}
        await sink.send(key=event.key, value=value)


if __name__ == "__main__":
    app.main()
