//! (being written: the real kube-apiserver + etcd harness)
