//! Who is who among the users that appear in audit events.

/// The node name of a kubelet user (`system:node:<name>`).
pub fn kubelet_node(username: &str) -> Option<&str> {
    username.strip_prefix("system:node:").filter(|n| !n.is_empty())
}

/// Control-plane identities that legitimately mint tokens and read token Secrets.
///
/// kube-controller-manager runs its controllers with per-controller service accounts in
/// `kube-system` (`--use-service-account-credentials`), minted for it through TokenRequest; the
/// names below are those controllers that read Secrets or mint tokens as part of their job.
pub fn is_control_plane(username: &str) -> bool {
    const USERS: [&str; 3] = ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"];
    const KUBE_SYSTEM_CONTROLLERS: [&str; 8] = [
        "namespace-controller",
        "generic-garbage-collector",
        "resourcequota-controller",
        "service-account-controller",
        "tokens-controller",
        "legacy-service-account-token-cleaner",
        "clusterrole-aggregation-controller",
        "horizontal-pod-autoscaler",
    ];
    if USERS.contains(&username) {
        return true;
    }
    username.strip_prefix("system:serviceaccount:kube-system:").is_some_and(|sa| KUBE_SYSTEM_CONTROLLERS.contains(&sa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kubelets_and_control_plane() {
        assert_eq!(kubelet_node("system:node:worker-1"), Some("worker-1"));
        assert_eq!(kubelet_node("system:node:"), None);
        assert_eq!(kubelet_node("alice"), None);
        assert!(is_control_plane("system:kube-controller-manager"));
        assert!(is_control_plane("system:serviceaccount:kube-system:namespace-controller"));
        assert!(!is_control_plane("system:serviceaccount:kube-system:coredns"));
        assert!(!is_control_plane("system:serviceaccount:payments:api"));
    }
}
