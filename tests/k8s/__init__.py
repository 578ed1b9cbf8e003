"""A real Kubernetes control plane on 127.0.0.1 for tests, the demo and people: etcd,
kube-apiserver, and for the `cluster` tier kube-controller-manager, kube-scheduler and kwok."""
