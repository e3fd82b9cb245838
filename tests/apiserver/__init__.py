"""Tests and test support for a real kube-apiserver + etcd (marker `apiserver`)."""
