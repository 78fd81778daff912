"""wa-sessions server: keeps WhatsApp Web linked-device sessions alive behind a gRPC API."""
