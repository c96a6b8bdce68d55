//! `tokentrail collect`: the inventory `analyze` needs, read through the Kubernetes API into an
//! evidence directory that `analyze` reads as it is.
//!
//! Four `kubectl get -o json`-style Lists: `serviceaccounts.json`, `secrets.json` (only Secrets
//! of type `kubernetes.io/service-account-token`), `pods.json`, `nodes.json`, all namespaces,
//! read page by page. A token Secret is written without its `data`: the token's SHA-256 takes
//! its place in the annotation [`TOKEN_SHA256_ANNOTATION`], so a responder can tell whether a
//! token found elsewhere is this Secret's without the evidence holding any token. Then
//! `MANIFEST.sha256`: `# key: value` lines (collection time, cluster, server, tokentrail
//! version) and the SHA-256 of every file in `sha256sum` format (`sha256sum -c` checks it).
//! It starts with `#`, not JSON, so `analyze` passes it over when it reads the directory.
//!
//! The credentials are kube-rs's usual ones: `--kubeconfig`, else `$KUBECONFIG` or
//! `~/.kube/config`, else the pod's service account when run in a cluster. What they need:
//! list on those four resources cluster-wide.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The annotation that carries a token Secret's token's SHA-256 (hex) in `secrets.json`: the
/// decoders' own constant, so what `collect` writes is what `analyze` reads.
pub use tokentrail_aggregator_core::TOKEN_SHA256_ANNOTATION;

/// The manifest's file name (`analyze` reads its `# cluster:` line to name the directory's cluster).
pub const MANIFEST: &str = tokentrail_correlator::clusters::COLLECT_MANIFEST;

/// Objects per list request: pages keep the apiserver's and our memory flat on large clusters.
const PAGE: u32 = 500;

/// Options of `tokentrail collect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The evidence directory to write (made if missing; files of an earlier collection in it
    /// are replaced).
    // `out`: the name of 0.1's flag, kept working.
    #[arg(long, alias = "out", value_name = "DIR")]
    out_dir: PathBuf,
    /// The kubeconfig to use instead of $KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its current one.
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Collect service accounts, token Secrets and pods of this namespace only (nodes are
    /// cluster-wide; all of them are collected). Default: all namespaces.
    #[arg(short, long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// The cluster's name in the manifest (default: the kubeconfig context's cluster).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

/// Runs `tokentrail collect`.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(collect(&args)) {
        Ok(files) => {
            eprintln!("tokentrail collect: wrote {} files and {MANIFEST} to {}", files, args.out_dir.display());
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tokentrail collect: {message}");
    ExitCode::FAILURE
}

/// Where the API is and what the cluster is called.
struct Target {
    client: Client,
    server: String,
    cluster: String,
}

async fn connect(args: &Args) -> Result<Target, String> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Some(Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => Kubeconfig::read().ok(),
    };
    let options = KubeConfigOptions { context: args.context.clone(), ..KubeConfigOptions::default() };
    let config = match &kubeconfig {
        Some(kc) if args.kubeconfig.is_some() || args.context.is_some() => {
            Config::from_custom_kubeconfig(kc.clone(), &options).await.map_err(|e| e.to_string())
        }
        None if args.context.is_some() => {
            Err(String::from("--context needs a kubeconfig: none at $KUBECONFIG or ~/.kube/config; give --kubeconfig"))
        }
        _ => Config::infer().await.map_err(|e| e.to_string()),
    };
    let config = config.map_err(|e| format!("no usable Kubernetes credentials: {e}"))?;
    let cluster = args
        .cluster
        .clone()
        .or_else(|| kubeconfig.as_ref().and_then(|kc| context_cluster(kc, args.context.as_deref())))
        .unwrap_or_else(|| String::from("in-cluster"));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| format!("kubernetes client: {e}"))?;
    Ok(Target { client, server, cluster })
}

/// The cluster name of the kubeconfig's context `name`, else of its current context.
fn context_cluster(kubeconfig: &Kubeconfig, name: Option<&str>) -> Option<String> {
    let wanted = name.or(kubeconfig.current_context.as_deref())?;
    let named = kubeconfig.contexts.iter().find(|c| c.name == wanted)?;
    Some(named.context.as_ref()?.cluster.clone())
}

async fn collect(args: &Args) -> Result<usize, String> {
    let target = connect(args).await?;
    let collected_at = Timestamp::now();
    std::fs::create_dir_all(&args.out_dir).map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let client = &target.client;
    let token_secrets = ListParams::default().fields("type=kubernetes.io/service-account-token");
    let files = [
        (
            "serviceaccounts.json",
            list_json(scoped::<ServiceAccount>(client, args), ListParams::default(), |a| a).await?,
        ),
        ("secrets.json", list_json(scoped::<Secret>(client, args), token_secrets, redact).await?),
        ("pods.json", list_json(scoped::<Pod>(client, args), ListParams::default(), |p| p).await?),
        ("nodes.json", list_json(Api::<Node>::all(client.clone()), ListParams::default(), |n| n).await?),
    ];
    let mut hashes = Vec::new();
    for (name, bytes) in &files {
        write(&args.out_dir.join(name), bytes)?;
        hashes.push((*name, hex(&Sha256::digest(bytes))));
    }
    let manifest =
        manifest(&collected_at.to_string(), &target.cluster, &target.server, args.namespace.as_deref(), &hashes);
    write(&args.out_dir.join(MANIFEST), manifest.as_bytes())?;
    Ok(files.len())
}

/// The objects of a namespaced kind in `--namespace`, or in all namespaces.
fn scoped<K>(client: &Client, args: &Args) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every object of one kind in all namespaces, page by page, as a `kind: List` document whose
/// items carry their `kind` and `apiVersion` (as `kubectl get -o json` writes them).
async fn list_json<K>(api: Api<K>, params: ListParams, keep: impl Fn(K) -> K) -> Result<Vec<u8>, String>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let mut items = Vec::new();
    let mut params = params.limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| format!("listing {kind}s: {e}"))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        items.extend(page.items.into_iter().map(&keep));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let mut bytes = serde_json::to_vec_pretty(&list).map_err(|e| format!("encoding {kind}s: {e}"))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A token Secret without its data; its token's SHA-256 in [`TOKEN_SHA256_ANNOTATION`].
fn redact(mut secret: Secret) -> Secret {
    let token = secret.data.take().and_then(|mut data| data.remove("token"));
    secret.string_data = None;
    if let Some(token) = token {
        secret
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TOKEN_SHA256_ANNOTATION.to_owned(), hex(&Sha256::digest(&token.0)));
    }
    secret
}

/// The manifest: header lines, then `<sha256>  <file>` per file (`sha256sum` format).
/// `namespace`: what `--namespace` restricted the collection to.
fn manifest(
    collected_at: &str,
    cluster: &str,
    server: &str,
    namespace: Option<&str>,
    files: &[(&str, String)],
) -> String {
    let mut text =
        String::from("# tokentrail collect: evidence inventory; check with `sha256sum -c MANIFEST.sha256`\n");
    let _ = writeln!(text, "# collected-at: {collected_at}");
    let _ = writeln!(text, "# cluster: {cluster}");
    let _ = writeln!(text, "# server: {server}");
    // A responder must know a namespace's evidence from a whole cluster's: absent pods are not
    // deleted pods.
    let _ = writeln!(text, "# namespaces: {}", namespace.unwrap_or("all"));
    let _ = writeln!(text, "# tokentrail: {}", env!("TOKENTRAIL_VERSION"));
    for (name, sha) in files {
        let _ = writeln!(text, "{sha}  {name}");
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn a_token_secret_loses_its_data_and_keeps_the_tokens_hash() {
        let mut secret = Secret::default();
        secret.metadata.name = Some("legacy".into());
        secret.data = Some(
            [("token".to_string(), ByteString(b"abc".to_vec())), ("ca.crt".into(), ByteString(b"x".to_vec()))].into(),
        );
        let redacted = redact(secret);
        assert!(redacted.data.is_none());
        let text = serde_json::to_string(&redacted).unwrap();
        assert!(!text.contains("YWJj") && !text.contains("\"abc\""), "{text}");
        assert_eq!(
            redacted.metadata.annotations.unwrap()[TOKEN_SHA256_ANNOTATION],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_manifest_is_sha256sum_format_under_comment_lines() {
        let text =
            manifest("2026-03-01T10:00:00Z", "prod", "https://10.0.0.1/", None, &[("pods.json", "ab".repeat(32))]);
        assert!(text.starts_with('#'), "analyze skips it because it is not JSON");
        assert!(text.contains("# cluster: prod\n") && text.contains("# collected-at: 2026-03-01T10:00:00Z\n"));
        assert!(text.ends_with(&format!("{}  pods.json\n", "ab".repeat(32))));
    }
}
