//! End-to-end tests against a cluster named by `KUBECONFIG` arrive with issue 7.
