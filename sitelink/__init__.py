"""The durable cloud<->site link (DESIGN.md "The site link"): envelope, SQLite outbox/inbox, MQTT.

Used by both sides; imports neither the cloud nor the edge.
"""

from sitelink.envelope import BadEnvelope, Envelope
from sitelink.link import LinkConfig, Reject, SiteLink
from sitelink.messages import BadMessage
from sitelink.store import LinkError

__all__ = ["BadEnvelope", "BadMessage", "Envelope", "LinkConfig", "LinkError", "Reject", "SiteLink"]
