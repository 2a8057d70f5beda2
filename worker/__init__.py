"""The long-running Kafka consumer that batches, classifies and routes support messages."""
