//! What `update`, `rotate` and `status` share: the runtime, the AWS context, and the
//! targets (a user, its stores and policy) built from the configuration.

use crate::aws::{AwsContext, AwsOptions};
use crate::cli::GlobalArgs;
use crate::config::{Config, StoreConfig};
use crate::error::Error;
use crate::policy::RotationPolicy;
use crate::rotation::Target;
use crate::store::{self, SecretStore, StoreEnv, TemplateValues};
use std::sync::Arc;

/// The async runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Load the AWS context: `--region`, else the service's, else `[defaults]`, else the SDK's.
pub async fn load_aws(
    config: &Config,
    global: &GlobalArgs,
    service_region: Option<&str>,
) -> AwsContext {
    let region = global
        .region
        .clone()
        .or_else(|| service_region.map(str::to_string))
        .or_else(|| config.defaults.region.clone());
    AwsContext::load(&AwsOptions {
        profile: global.profile.clone(),
        region,
        endpoint_url: global.endpoint_url.clone(),
    })
    .await
}

/// The stores and policy for users under `iam_path`: its `[paths]` section, else none and
/// the `[defaults]` policy (resolved, and so checked, when the configuration was loaded).
pub fn path_settings(config: &Config, iam_path: &str) -> (Vec<StoreConfig>, RotationPolicy) {
    match config.path_policy(iam_path) {
        Some(p) => (p.stores.clone(), p.policy.clone()),
        None => (Vec::new(), config.defaults.policy.clone()),
    }
}

/// One user with its stores opened (plus `extra`, e.g. the outfile) and its policy.
pub fn open_target(
    env: &StoreEnv,
    user: &str,
    service: Option<&str>,
    stores: &[StoreConfig],
    policy: &RotationPolicy,
    extra: Option<Arc<dyn SecretStore>>,
) -> Target {
    let values = TemplateValues { user, service };
    let mut opened: Vec<Arc<dyn SecretStore>> = stores
        .iter()
        .map(|c| store::open(c, &values, env))
        .collect();
    opened.extend(extra);
    Target {
        user: user.to_string(),
        service: service.map(str::to_string),
        stores: opened,
        policy: policy.clone(),
    }
}
