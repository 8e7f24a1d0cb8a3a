"""The Kafka side of segstream: clients, topics, admin, the partitioner."""
