"""kubelet PodResources v1 client: which pod holds which GPU or MIG device on this node."""
