"""The gateway's own model of a chat exchange, shared by every ingress codec and upstream adapter.

Ingress codecs decode their protocol into these types and encode them back; upstream adapters build
their vendor's request from them and parse the vendor's answer into them. Nothing here knows a wire
format. Same-protocol traffic skips this layer entirely (see `omnirelay.passthrough`).
"""
