"""IPC-CFX (IPC-2591) messages, the transactional outbox they go through, and their
publisher over AMQP 1.0 (docs/cfx.md)."""
