"""The NATS transport: commands as request/reply on ``<prefix>.cmd.<command>``, session
events on ``<prefix>.events.<session_id>.<type>`` (see API.md "NATS transport")."""

from transports.nats.transport import (
    DEFAULT_PREFIX,
    QUEUE_GROUP,
    STATUS_HEADER,
    NatsTransport,
    start_nats_transport,
)

__all__ = [
    "DEFAULT_PREFIX",
    "QUEUE_GROUP",
    "STATUS_HEADER",
    "NatsTransport",
    "start_nats_transport",
]
