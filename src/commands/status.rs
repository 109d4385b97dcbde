//! `credrot status`: a read-only report of every user's keys and stores, with a verdict per
//! user, and an exit code that can gate a pipeline.

use super::context::{load_aws, no_users_at, open_target, path_settings, runtime};
use crate::aws::{AwsContext, IamApi};
use crate::cli::GlobalArgs;
use crate::config::{normalize_iam_path, Config};
use crate::error::Error;
use crate::output;
use crate::rotation::Target;
use crate::status::{user_status, StatusOptions, UserStatus, Verdict};
use crate::store::StoreEnv;
use futures::stream::{self, StreamExt};

/// What `credrot status` was asked.
pub struct StatusRequest<'a> {
    /// Services to report; all of them when empty and no path is given.
    pub services: &'a [String],
    /// An IAM path whose users are reported too.
    pub path: Option<&'a str>,
    /// Exit 3 when any user is at or past this verdict.
    pub fail_on: Option<Verdict>,
    /// POST the findings to the `[notify]` webhook.
    pub alert: bool,
    /// Thresholds.
    pub options: StatusOptions,
    /// Users read at once.
    pub concurrency: usize,
}

/// Run the report.
pub fn run(config: &Config, global: &GlobalArgs, request: &StatusRequest<'_>) -> Result<(), Error> {
    let names: Vec<&String> = if request.services.is_empty() && request.path.is_none() {
        config.services.keys().collect()
    } else {
        request.services.iter().collect()
    };
    // Unknown service names are a usage error, found before any AWS call.
    let services = names
        .iter()
        .map(|name| config.service(name))
        .collect::<Result<Vec<_>, _>>()?;
    if request.alert && config.notify.is_none() {
        return Err(Error::Usage(format!(
            "--alert needs a [notify] webhook in {}; add [notify] webhook = \"https://host/path\"",
            config.file.display()
        )));
    }
    let statuses = runtime()?.block_on(async {
        let aws = load_aws(config, global, None).await?;
        let mut targets: Vec<Target> = services
            .iter()
            .map(|s| {
                // The service's stores live in its region, as they do for `update`.
                let region = global.region.as_deref().or(s.region.as_deref());
                let aws = AwsContext::from_sdk_config(aws.config_for_region(region));
                let env = StoreEnv::new(aws, config.base_dir.clone(), s.tags.clone());
                open_target(&env, &s.iam_user, Some(&s.name), &s.stores, &s.policy, None)
            })
            .collect();
        if let Some(path) = request.path {
            let iam_path = normalize_iam_path(path);
            let (stores, policy) = path_settings(config, &iam_path);
            let env = StoreEnv::new(aws.clone(), config.base_dir.clone(), Vec::new());
            let users = aws.iam().list_users(&iam_path).await?;
            if users.is_empty() {
                return Err(no_users_at(&iam_path));
            }
            for user in users {
                targets.push(open_target(&env, &user.name, None, &stores, &policy, None));
            }
        }
        if targets.is_empty() && request.fail_on.is_some() {
            return Err(Error::Usage(format!(
                "--fail-on found no user to check: {} has no service; name services, add [services.NAME] sections, or pass --path PATH",
                config.file.display()
            )));
        }
        let iam = aws.iam();
        let iam: &dyn IamApi = &iam;
        let statuses: Vec<UserStatus> = stream::iter(&targets)
            .map(|t| user_status(iam, t, request.options))
            .buffered(request.concurrency.max(1))
            .collect()
            .await;
        Ok::<_, Error>(statuses)
    })?;
    output::write_status(&mut std::io::stdout().lock(), &statuses, global.output)?;
    if let (true, Some(notify)) = (request.alert, &config.notify) {
        runtime()?
            .block_on(crate::monitor::send_alert(
                notify,
                &statuses,
                request.fail_on,
            ))
            .map_err(Error::Alert)?;
    }
    let errors = statuses
        .iter()
        .filter(|s| s.verdict == Verdict::Error)
        .count();
    if errors > 0 {
        return Err(Error::StatusIncomplete { users: errors });
    }
    if let Some(gate) = request.fail_on {
        let tripped = statuses.iter().filter(|s| s.verdict >= gate).count();
        if tripped > 0 {
            return Err(Error::GateTripped {
                verdict: format!("{gate:?}").to_lowercase(),
                users: tripped,
            });
        }
    }
    Ok(())
}
