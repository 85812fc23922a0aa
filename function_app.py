"""The Azure Functions app (Python v2 programming model): triggers and wiring, nothing else.

Each function calls one pipeline entry point (``pipeline.app_entry`` for the timer, queues and
Event Hubs; ``pipeline.http_api`` for HTTP). No setting is read here: binding expressions such as
``%CYCLE_SCHEDULE%`` are resolved by the Functions host, and the pipeline reads its own settings
when a function runs, so a missing setting can never make the app load zero functions.
See docs/function-app.md.
"""

from __future__ import annotations

# The worker checks annotations at load time and refuses ``list[...]`` ("invalid non-type
# annotation"); ``typing.List`` is what it accepts for cardinality many.
from typing import List  # noqa: UP035

import azure.functions as func

from pipeline import app_entry, http_api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


# -- timer and queues ----------------------------------------------------------------------------


@app.timer_trigger(
    arg_name="timer", schedule="%CYCLE_SCHEDULE%", run_on_startup=False, use_monitor=True
)
def cycle_timer(timer: func.TimerRequest) -> None:
    app_entry.run_scheduled_cycle(past_due=timer.past_due)


@app.queue_trigger(arg_name="msg", queue_name="%FANOUT_QUEUE%", connection="AzureWebJobsStorage")
def fanout_shard(msg: func.QueueMessage) -> None:
    app_entry.run_fanout_message(msg.get_body())


@app.queue_trigger(arg_name="msg", queue_name="%COLLECTOR_QUEUE%", connection="AzureWebJobsStorage")
def collector_document(msg: func.QueueMessage) -> None:
    app_entry.process_collector(msg.get_body())


# -- streaming detection -------------------------------------------------------------------------


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%DEFENDER_STREAM_HUB%",
    connection="DefenderStream",
    consumer_group="%DEFENDER_STREAM_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
)
@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:00:10")
def defender_stream(events: List[func.EventHubEvent]) -> None:  # noqa: UP006
    app_entry.process_stream([event.get_body() for event in events])


# -- HTTP ----------------------------------------------------------------------------------------


@app.route(route="collector", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def post_collector(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.post_collector(req)


@app.route(route="evaluate", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def post_evaluate(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.post_evaluate(req)


@app.route(
    route="devices/{device_id}/coverage", methods=["GET"], auth_level=func.AuthLevel.FUNCTION
)
def get_coverage(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.get_coverage(req)


@app.route(route="matrix", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_matrix(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.get_matrix(req)


@app.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_audit(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.get_audit(req)


@app.route(route="blocklists/{format}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_blocklist(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.get_blocklist(req)


@app.route(route="actions/{plan_id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def approve_action(req: func.HttpRequest) -> func.HttpResponse:
    return http_api.approve_action(req)
