//! Sources of Kubernetes objects: a manifest directory and the API server.
