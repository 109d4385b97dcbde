//! `credrot status`: a read-only report of every user's keys and stores, with a verdict per
//! user, and an exit code that can gate a pipeline.

use super::context::{load_aws, no_users_at, open_target, path_settings, runtime};
use crate::accounts::{self, Account, Caller};
use crate::aws::{AwsContext, IamApi};
use crate::cli::GlobalArgs;
use crate::config::{normalize_iam_path, Config, Service};
use crate::error::Error;
use crate::output;
use crate::rotation::Target;
use crate::status::{account_failed, user_status, StatusOptions, UserStatus, Verdict};
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
    /// Only these accounts of `[accounts]`.
    pub accounts: &'a [String],
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
    if !request.accounts.is_empty() && config.accounts.is_none() {
        return Err(Error::Usage(format!(
            "--account needs an [accounts] section in {}; without it credrot reads the caller's account",
            config.file.display()
        )));
    }
    let statuses = runtime()?.block_on(async {
        let aws = load_aws(config, global, None).await?;
        let Some(accounts_config) = &config.accounts else {
            let targets = account_targets(config, global, &services, request, &aws, None).await?;
            if targets.is_empty() && request.fail_on.is_some() {
                return Err(no_one_to_check(config));
            }
            return Ok(read_all(&aws, &targets, request).await);
        };
        let caller_arn = aws.caller_arn().await?;
        let caller = Caller::from_arn(&caller_arn).ok_or_else(|| {
            Error::Usage(format!(
                "STS names the caller {caller_arn}, which is not an IAM or STS ARN"
            ))
        })?;
        let selected = accounts::select(accounts_config, &aws.organizations(), request.accounts)
            .await
            .map_err(Error::from)?;
        let run_id = format!("credrot-status-{}", std::process::id());
        let per_account: Vec<Result<Vec<UserStatus>, (String, Error)>> = stream::iter(&selected)
            .map(|account| {
                let (aws, caller, services, run_id) = (&aws, &caller, &services, &run_id);
                async move {
                    let work = async {
                        let aws =
                            accounts::context_for(aws, caller, accounts_config, account, run_id)
                                .await
                                .map_err(Error::from)?;
                        let targets =
                            account_targets(config, global, services, request, &aws, Some(account))
                                .await?;
                        let mut statuses = read_all(&aws, &targets, request).await;
                        for s in &mut statuses {
                            s.account = Some(account.id.clone());
                        }
                        Ok::<_, Error>(statuses)
                    };
                    work.await.map_err(|e| (account.id.clone(), e))
                }
            })
            .buffered(accounts_config.concurrency)
            .collect()
            .await;
        let mut statuses = Vec::new();
        for result in per_account {
            match result {
                Ok(s) => statuses.extend(s),
                Err((account, e)) => statuses.push(account_failed(&account, e.to_string())),
            }
        }
        if statuses.is_empty() {
            return Err(match request.path {
                Some(path) => no_users_at(&normalize_iam_path(path)),
                None => no_one_to_check(config),
            });
        }
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

/// A gate that would look at nobody.
fn no_one_to_check(config: &Config) -> Error {
    Error::Usage(format!(
        "--fail-on found no user to check: {} has no service; name services, add [services.NAME] sections, or pass --path PATH",
        config.file.display()
    ))
}

/// The users to report in one account (`None`: the caller's, without `[accounts]`).
async fn account_targets(
    config: &Config,
    global: &GlobalArgs,
    services: &[&Service],
    request: &StatusRequest<'_>,
    aws: &AwsContext,
    account: Option<&Account>,
) -> Result<Vec<Target>, Error> {
    let mut targets: Vec<Target> = services
        .iter()
        .filter(|s| accounts::runs_in(&s.accounts, account))
        .map(|s| {
            // The service's stores live in its region, as they do for `update`.
            let region = global.region.as_deref().or(s.region.as_deref());
            let aws = aws.with_sdk_config(aws.config_for_region(region));
            let env = StoreEnv::new(aws, config.base_dir.clone(), s.tags.clone())
                .for_account(account.cloned());
            open_target(&env, &s.iam_user, Some(&s.name), &s.stores, &s.policy, None)
        })
        .collect();
    if let Some(path) = request.path {
        let iam_path = normalize_iam_path(path);
        let scope = config
            .path_policy(&iam_path)
            .map(|p| p.accounts.clone())
            .unwrap_or_default();
        if !accounts::runs_in(&scope, account) {
            return Ok(targets);
        }
        let (stores, policy) = path_settings(config, &iam_path);
        let env = StoreEnv::new(aws.clone(), config.base_dir.clone(), Vec::new())
            .for_account(account.cloned());
        let users = aws.iam().list_users(&iam_path).await?;
        if users.is_empty() && account.is_none() {
            return Err(no_users_at(&iam_path));
        }
        for user in users {
            targets.push(open_target(&env, &user.name, None, &stores, &policy, None));
        }
    }
    Ok(targets)
}

/// Read every target's status.
async fn read_all(
    aws: &AwsContext,
    targets: &[Target],
    request: &StatusRequest<'_>,
) -> Vec<UserStatus> {
    let iam = aws.iam();
    let iam: &dyn IamApi = &iam;
    stream::iter(targets)
        .map(|t| user_status(iam, t, request.options))
        .buffered(request.concurrency.max(1))
        .collect()
        .await
}
