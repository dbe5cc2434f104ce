"""Same-protocol relays: when the client's protocol is the upstream's dialect, the request is
forwarded with only the edits the gateway needs and the answer relayed as the upstream's own bytes,
with usage read on the way. One module per dialect."""
