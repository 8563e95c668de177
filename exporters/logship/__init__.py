"""Ship ECS events to Elasticsearch: bounded queue, disk spool, bulk create with deterministic ids, dead letters."""
