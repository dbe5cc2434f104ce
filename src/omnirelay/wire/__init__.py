"""Small wire-format helpers shared by a protocol's ingress codec and its upstream adapter."""
