//! Which Kubernetes namespaces a process watches: all of them (the operator by default), or a
//! list (the operator's `--watch-namespace`, the data plane's one namespace).

/// Which Kubernetes namespaces are watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    All,
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// `--watch-namespace` values (possibly comma-separated, from the environment); none: all.
    pub fn from_flags(values: &[String]) -> Self {
        let mut namespaces: Vec<String> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        if namespaces.is_empty() {
            WatchScope::All
        } else {
            WatchScope::Namespaces(namespaces)
        }
    }

    /// Exactly one Kubernetes namespace.
    pub fn namespace(k8s_namespace: impl Into<String>) -> Self {
        WatchScope::Namespaces(vec![k8s_namespace.into()])
    }

    /// The namespace of each watch to start: `None` for one cluster-wide watch.
    pub fn watched(&self) -> Vec<Option<String>> {
        match self {
            WatchScope::All => vec![None],
            WatchScope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
        }
    }

    /// One `Api` per watched namespace, or one cluster-wide.
    pub fn apis<K>(&self, client: &kube::Client) -> Vec<kube::Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        self.watched()
            .iter()
            .map(|ns| api(client, ns.as_deref()))
            .collect()
    }
}

/// The `Api` of kind `K` in `k8s_namespace`, or cluster-wide for `None`.
pub fn api<K>(client: &kube::Client, k8s_namespace: Option<&str>) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match k8s_namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_namespaces_split_on_commas_and_none_means_all() {
        assert_eq!(WatchScope::from_flags(&[]), WatchScope::All);
        assert_eq!(WatchScope::from_flags(&[" ".into()]), WatchScope::All);
        assert_eq!(
            WatchScope::from_flags(&["b,a".into(), "c".into(), "a".into()]),
            WatchScope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn all_is_one_cluster_wide_watch_and_a_list_one_watch_per_namespace() {
        assert_eq!(WatchScope::All.watched(), [None]);
        assert_eq!(
            WatchScope::from_flags(&["b,a".into()]).watched(),
            [Some("a".to_string()), Some("b".to_string())]
        );
        assert_eq!(
            WatchScope::namespace("shop").watched(),
            [Some("shop".to_string())]
        );
    }
}
