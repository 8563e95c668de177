"""`gpulens kserve-exporter`: InferenceService state from the Kubernetes API and normalised model-server stats."""
