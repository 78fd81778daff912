"""API layer: servicers, error mapping, health and reflection. The only layer importing grpc."""
