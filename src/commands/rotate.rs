//! `credrot update SERVICE` and `credrot rotate --path PATH`.

use super::context::{
    load_aws, no_users_at, open_target, path_settings, runtime, CredentialSource,
};
use crate::accounts::{self, Account, AccountFailure, Caller};
use crate::audit::{AuditError, AuditFile, AuditLog, AuditSummary, CloudWatchSink, RunInfo};
use crate::aws::{AwsContext, IamApi};
use crate::cli::{GlobalArgs, RotationArgs, RunGate};
use crate::config::{normalize_iam_path, Config, Hook, Service, StoreConfig};
use crate::error::Error;
use crate::hooks::HookRunner;
use crate::notify::RunNotice;
use crate::output;
use crate::policy::RotationPolicy;
use crate::progress::RunProgress;
use crate::rotation::{
    AccountEvents, DiscardEvents, Engine, EngineOptions, EventSink, InflightRecords, Outcome,
    Target, UserReport,
};
use crate::secret::AccessKey;
use crate::store::{self, Outfile, SecretPrinter, SecretStore, StoreEnv, TemplateValues};
use crate::terraform;
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// What one `update`/`rotate` run rotates, in each account it covers.
enum Subject<'a> {
    /// `update SERVICE`.
    Service {
        service: &'a Service,
        terraform: TerraformArgs<'a>,
    },
    /// `rotate --path PATH`.
    Path {
        iam_path: String,
        stores: Vec<StoreConfig>,
        policy: Box<RotationPolicy>,
        concurrency: usize,
    },
}

impl Subject<'_> {
    /// The `[accounts]` it runs in (empty: every one).
    fn scope<'c>(&'c self, config: &'c Config) -> &'c [String] {
        match self {
            Subject::Service { service, .. } => &service.accounts,
            Subject::Path { iam_path, .. } => config
                .path_policy(iam_path)
                .map_or(&[][..], |p| p.accounts.as_slice()),
        }
    }
}

/// How `update` uses Terraform for a service with `source = "terraform"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerraformArgs<'a> {
    /// `--terraform-bin`.
    pub bin: Option<&'a Path>,
    /// `--terraform-apply`: a full rotation through Terraform.
    pub apply: bool,
}

/// What a run does in one account: the users with their stores, their hooks, the key
/// Terraform made, if it made it, and how Terraform makes the next one (--terraform-apply).
struct Planned {
    targets: Vec<Target>,
    hooks: HookRunner,
    external: Option<AccessKey>,
    terraform: Option<TerraformApply>,
}

/// `--terraform-apply`, prepared: the key maker and what Terraform's state says.
struct TerraformApply {
    maker: Arc<terraform::TerraformKeyMaker>,
    /// Whether the state holds terraform_resource: a run stopped after `state rm` left it
    /// out, and the key that would re-create it is made at once, due or not.
    in_state: bool,
    /// A dry run's `terraform plan -target` summary.
    checked: Option<String>,
}

/// `--terraform-apply` needs a Terraform-sourced service with terraform_resource: refused
/// before any AWS call (exit 2).
fn check_terraform_apply(config: &Config, service: &Service) -> Result<(), Error> {
    let name = &service.name;
    match &service.terraform {
        None => Err(Error::Usage(format!(
            "--terraform-apply is for services with source = \"terraform\", and service '{name}' in {} takes its key from IAM; run credrot update {name} without it",
            config.file.display()
        ))),
        Some(tf) if tf.resource.is_none() => Err(Error::Usage(format!(
            "service '{name}' in {} has no terraform_resource, which --terraform-apply needs: add terraform_resource = \"aws_iam_access_key.NAME\" to [services.{name}], the address `terraform state list` shows in {}",
            config.file.display(),
            tf.dir.display()
        ))),
        Some(_) => Ok(()),
    }
}

/// Rotate the IAM user of one configured service.
pub fn update(
    config: &Config,
    name: &str,
    terraform: TerraformArgs<'_>,
    global: &GlobalArgs,
    args: &RotationArgs,
) -> Result<(), Error> {
    let service = config.service(name)?;
    if terraform.apply {
        check_terraform_apply(config, service)?;
    }
    let job = Job::prepare(
        config,
        &service.stores,
        global,
        args,
        &format!("service '{name}'"),
        "[[services.NAME.stores]]",
        format!("update {name}"),
    )?;
    let subject = Subject::Service { service, terraform };
    job.run(job.rotate(&subject, service.region.as_deref()))
}

/// Rotate every IAM user whose path is `path`.
pub fn rotate_path(
    config: &Config,
    path: &str,
    concurrency: usize,
    global: &GlobalArgs,
    args: &RotationArgs,
) -> Result<(), Error> {
    let iam_path = normalize_iam_path(path);
    let (stores, policy) = path_settings(config, &iam_path);
    let job = Job::prepare(
        config,
        &stores,
        global,
        args,
        &format!("IAM path {iam_path}"),
        "[paths.NAME] stores",
        format!("rotate --path {iam_path}"),
    )?;
    let subject = Subject::Path {
        iam_path,
        stores,
        policy: Box::new(policy),
        concurrency,
    };
    job.run(job.rotate(&subject, None))
}

/// Stores of another section of services.toml that hand out the same IAM user's key, with
/// the service name their templates use.
struct SharedStores {
    service: Option<String>,
    stores: Vec<StoreConfig>,
    /// The section's `after_rotate` hooks: its consumers need the new key too.
    hooks: Vec<Hook>,
}

/// The stores of every service of `account` whose `iam_user` is `user`, except `except`.
fn services_of_user(
    config: &Config,
    user: &str,
    except: Option<&str>,
    account: Option<&Account>,
) -> Vec<SharedStores> {
    config
        .services
        .values()
        .filter(|s| s.iam_user == user && Some(s.name.as_str()) != except)
        .filter(|s| accounts::runs_in(&s.accounts, account))
        .map(|s| SharedStores {
            service: Some(s.name.clone()),
            stores: s.stores.clone(),
            hooks: s.after_rotate.clone(),
        })
        .collect()
}

/// The stores of every `[paths.NAME]` section whose path holds the service's user: one
/// ListUsers per section with stores, and none when there is no such section. A path store
/// that lands, for another user of the path, on one of the service's stores is refused.
async fn paths_of_user(
    config: &Config,
    aws: &AwsContext,
    env: &StoreEnv,
    service: &Service,
) -> Result<Vec<SharedStores>, Error> {
    let own = service_locations_of(service, env);
    let mut shared = Vec::new();
    for (path, section) in &config.paths {
        if section.stores.is_empty() && section.after_rotate.is_empty() {
            continue;
        }
        if !accounts::runs_in(&section.accounts, env.account()) {
            continue;
        }
        let users = aws.iam().list_users(path).await?;
        for user in users.iter().filter(|u| u.name != service.iam_user) {
            let values = TemplateValues {
                user: &user.name,
                service: None,
                account: env.account(),
            };
            let opened: Vec<Arc<dyn SecretStore>> = section
                .stores
                .iter()
                .map(|c| store::open(c, &values, env))
                .collect();
            refuse_foreign_stores(&user.name, &opened, &own)?;
        }
        if users.iter().any(|u| u.name == service.iam_user) {
            shared.push(SharedStores {
                service: None,
                stores: section.stores.clone(),
                hooks: section.after_rotate.clone(),
            });
        }
    }
    Ok(shared)
}

/// Where each service's stores are: location → (service, IAM user).
type ServiceLocations = BTreeMap<String, (String, String)>;

fn service_locations_of(service: &Service, env: &StoreEnv) -> ServiceLocations {
    let values = TemplateValues {
        user: &service.iam_user,
        service: Some(&service.name),
        account: env.account(),
    };
    service
        .stores
        .iter()
        .map(|c| {
            let location = store::open(c, &values, env).location();
            (location, (service.name.clone(), service.iam_user.clone()))
        })
        .collect()
}

fn service_locations(config: &Config, env: &StoreEnv) -> ServiceLocations {
    config
        .services
        .values()
        .filter(|s| accounts::runs_in(&s.accounts, env.account()))
        .flat_map(|s| service_locations_of(s, env))
        .collect()
}

/// A store of `user` that is the store of a service of another IAM user: each rotation
/// would overwrite the other's key. Only a run knows which users a path holds, so this is
/// checked here, before any change (exit 2).
fn refuse_foreign_stores(
    user: &str,
    stores: &[Arc<dyn SecretStore>],
    services: &ServiceLocations,
) -> Result<(), Error> {
    for store in stores {
        let location = store.location();
        if let Some((service, owner)) = services.get(&location) {
            if owner != user {
                return Err(Error::Usage(format!(
                    "store {location} of IAM user {user} (through its [paths] section) is also the store of service '{service}', whose IAM user is {owner}; each rotation would overwrite the other's key: give the path's stores a location that cannot meet the service's (e.g. another directory or prefix)"
                )));
            }
        }
    }
    Ok(())
}

/// One `update`/`rotate` invocation, checked before any AWS call.
struct Job<'a> {
    config: &'a Config,
    global: &'a GlobalArgs,
    args: &'a RotationArgs,
    outfile: Option<Arc<Outfile>>,
    /// `--print-secrets` (not with --dry-run): a store appended last to every user's.
    printer: Option<Arc<SecretPrinter>>,
    /// The audit file, opened (and so proven writable) before any AWS call; moved into
    /// the run's [`AuditLog`] when the run starts.
    audit_file: Mutex<Option<AuditFile>>,
    /// What ran, for the notice.
    command: String,
    /// This run's id: IAM lock owner, audit `run`, notice `run_id`.
    run_id: String,
    started: SystemTime,
    /// `--time-limit`: no user or account starts after this.
    stop_at: Option<Instant>,
    /// Whether the run's notice went out (a run that stops early sends one at its end).
    notified: AtomicBool,
}

impl<'a> Job<'a> {
    /// Refuse, before AWS is touched, a run whose keys would have nowhere to go or whose
    /// outfile cannot be used. Store settings were validated with the configuration; the
    /// stores themselves are checked by the engine, per user, before any IAM change.
    fn prepare(
        config: &'a Config,
        stores: &[StoreConfig],
        global: &'a GlobalArgs,
        args: &'a RotationArgs,
        subject: &str,
        section: &str,
        command: String,
    ) -> Result<Self, Error> {
        // Before the outfile is made: a usage error leaves nothing behind.
        CredentialSource::of(global).check_exists()?;
        if !args.accounts.is_empty() && config.accounts.is_none() {
            return Err(Error::Usage(format!(
                "--account needs an [accounts] section in {} (the role to assume and the accounts); without it credrot runs in the caller's account",
                config.file.display()
            )));
        }
        if stores.is_empty() && args.outfile.is_none() && !args.print_secrets {
            if !config.file.exists() {
                return Err(Error::Usage(format!(
                    "{subject}: no configuration file {} (--config, CREDROT_CONFIG, else ./services.toml), so a new key would have nowhere to go; pass -o FILE or --print-secrets, or create the file with `credrot generate` (or by hand with {section})",
                    config.file.display()
                )));
            }
            return Err(Error::Usage(format!(
                "{subject} has no store configured in {}, so a new key would have nowhere to go; add {section} to it, or pass -o FILE or --print-secrets",
                config.file.display()
            )));
        }
        let outfile = match &args.outfile {
            Some(path) => {
                let file = Outfile::open(path).map_err(|e| Error::Usage(e.to_string()))?;
                if !args.dry_run {
                    file.create_if_missing()
                        .map_err(|e| Error::Usage(e.to_string()))?;
                }
                Some(file)
            }
            None => None,
        };
        // A dry run changes nothing, so it records nothing.
        let audit_file = match config.audit.as_ref().and_then(|a| a.path.as_deref()) {
            Some(path) if !args.dry_run => {
                Some(AuditFile::open(path).map_err(|e| Error::Usage(e.to_string()))?)
            }
            _ => None,
        };
        Ok(Job {
            config,
            global,
            args,
            outfile,
            printer: (args.print_secrets && !args.dry_run).then(SecretPrinter::stdout),
            audit_file: Mutex::new(audit_file),
            command,
            run_id: run_id(),
            started: SystemTime::now(),
            stop_at: args.time_limit.map(|limit| Instant::now() + limit),
            notified: AtomicBool::new(false),
        })
    }

    /// No hooks yet; commands run in services.toml's directory.
    fn hooks(&self) -> HookRunner {
        HookRunner::new(None, self.config.base_dir.clone())
    }

    /// What the stores of this run share; `tags` are the service's.
    fn store_env(&self, aws: &AwsContext, tags: Vec<String>) -> StoreEnv {
        StoreEnv::new(aws.clone(), self.config.base_dir.clone(), tags)
    }

    /// Run `work` on a fresh runtime; a run that ends in an error before its notice went
    /// out still notifies, so that a run that never got to rotate is heard of too.
    fn run(&self, work: impl std::future::Future<Output = Result<(), Error>>) -> Result<(), Error> {
        runtime()?.block_on(async {
            let result = work.await;
            if let Err(e) = &result {
                if !self.notified.load(Ordering::SeqCst) {
                    self.notify(&[], vec![e.to_string()], None).await;
                }
            }
            result
        })
    }

    /// POST the run's notice, if `[notify]` is configured. Never fails the run.
    async fn notify(
        &self,
        reports: &[UserReport],
        errors: Vec<String>,
        audit: Option<&AuditSummary>,
    ) {
        let Some(notify) = &self.config.notify else {
            return;
        };
        self.notified.store(true, Ordering::SeqCst);
        let mut notice = RunNotice::new(
            &self.run_id,
            &self.command,
            self.args.dry_run,
            self.started,
            reports,
        );
        notice.errors = errors;
        notice.audit = audit;
        match notify.webhook.post(notice.to_json(), notify.timeout).await {
            Ok(()) => tracing::info!(webhook = %notify.webhook.target(), "run notice sent"),
            Err(e) => {
                tracing::warn!("could not send the run notice: {e}; the run's result is unchanged")
            }
        }
    }

    /// The run's audit sink, when `[audit]` is configured and this is not a dry run. The
    /// CloudWatch group and stream are made ready here, before any key changes.
    async fn start_audit(&self, aws: &AwsContext) -> Result<Option<Arc<AuditLog>>, Error> {
        let Some(audit) = self.config.audit.as_ref().filter(|_| !self.args.dry_run) else {
            return Ok(None);
        };
        // Labels the audit lines only: a rotation must not stop for it.
        let caller = aws.caller_arn().await.unwrap_or_else(|e| {
            tracing::warn!("cannot tell which identity this run uses ({e}); the audit log records the caller as \"unknown\"");
            "unknown".to_string()
        });
        tracing::info!("running as {caller}");
        let cloudwatch = match &audit.cloudwatch {
            Some(target) => Some(
                CloudWatchSink::start(
                    Arc::new(aws.logs()),
                    &target.group,
                    target.stream.as_deref().unwrap_or(&self.run_id),
                )
                .await
                .map_err(AuditError::from)?,
            ),
            None => None,
        };
        let file = self.audit_file.lock().expect("audit file lock").take();
        let run = RunInfo {
            run_id: self.run_id.clone(),
            caller,
        };
        Ok(Some(Arc::new(AuditLog::new(run, file, cloudwatch))))
    }

    /// The target for `user`: the stores of the section being run, then every other store
    /// that hands out the same IAM user's key (`also`), then the `-o` copy. A key is
    /// written to all of them and protected by all of them, whichever section is run.
    fn target(
        &self,
        env: &StoreEnv,
        user: &str,
        service: Option<&str>,
        stores: &[StoreConfig],
        policy: &RotationPolicy,
        also: &[SharedStores],
    ) -> Target {
        let mut target = open_target(env, user, service, stores, policy, None);
        let mut seen: Vec<String> = target.stores.iter().map(|s| s.location()).collect();
        for shared in also {
            let values = TemplateValues {
                user,
                service: shared.service.as_deref(),
                account: env.account(),
            };
            for config in &shared.stores {
                let store = store::open(config, &values, env);
                if !seen.contains(&store.location()) {
                    seen.push(store.location());
                    target.stores.push(store);
                }
            }
        }
        // User names repeat across accounts: there the entries are `ACCOUNT/user`.
        let entry = match env.account() {
            Some(account) => format!("{}/{user}", account.id),
            None => user.to_string(),
        };
        let outfile = self
            .outfile
            .as_ref()
            .map(|file| Arc::new(file.store_for(&entry)) as Arc<dyn SecretStore>);
        target.stores.extend(outfile.clone());
        // Last, so that a key is printed only once every store has it and it is verified,
        // and a key that cannot be printed is rolled back like any failed store step.
        if let Some(printer) = &self.printer {
            target
                .stores
                .push(Arc::new(printer.store_for(&entry, outfile)));
        }
        target
    }

    /// The whole run: without `[accounts]` in the caller's account, as always; with it, in
    /// every account it selects, each independently of the others.
    async fn rotate(&self, subject: &Subject<'_>, region: Option<&str>) -> Result<(), Error> {
        let base = load_aws(self.config, self.global, region).await?;
        let Some(accounts_config) = &self.config.accounts else {
            let planned = self.plan(subject, &base, None).await?;
            self.check_stores(&planned.targets).await?;
            let audit = self.start_audit(&base).await?;
            let progress = RunProgress::new(planned.targets.len() as u64, self.global.quiet);
            let concurrency = match subject {
                Subject::Path { concurrency, .. } => *concurrency,
                Subject::Service { .. } => 1,
            };
            // CREDROT_ACCOUNT for hooks is the run's account, when STS says.
            let account = if !self.args.dry_run && !planned.hooks.is_empty() {
                base.caller_arn()
                    .await
                    .ok()
                    .and_then(|arn| HookRunner::account_of(&arn))
            } else {
                None
            };
            let reports = self
                .rotate_account(
                    &base,
                    planned,
                    concurrency,
                    &audit,
                    &progress,
                    None,
                    account,
                )
                .await;
            progress.finish();
            return self.conclude(&base, reports, Vec::new(), audit).await;
        };
        let caller_arn = base.caller_arn().await?;
        let caller = Caller::from_arn(&caller_arn).ok_or_else(|| {
            Error::Usage(format!(
                "STS names the caller {caller_arn}, which is not an IAM or STS ARN"
            ))
        })?;
        let scope = subject.scope(self.config);
        let selected =
            accounts::select(accounts_config, &base.organizations(), &self.args.accounts)
                .await
                .map_err(Error::from)?;
        let selected: Vec<Account> = selected
            .into_iter()
            .filter(|a| accounts::runs_in(scope, Some(a)))
            .collect();
        if selected.is_empty() {
            return Err(Error::Usage(format!(
                "{} runs in none of the accounts selected by [accounts] and --account; check its accounts = [...]",
                self.command
            )));
        }
        tracing::info!(accounts = selected.len(), "running in each account");
        let audit = self.start_audit(&base).await?;
        let progress = RunProgress::growing(self.global.quiet);
        // Users in flight at once, over every account: each has at most one IAM request
        // outstanding, and IAM throttles per account.
        let per_account = match subject {
            Subject::Path { concurrency, .. } => (*concurrency)
                .min(accounts_config.max_in_flight / accounts_config.concurrency)
                .max(1),
            Subject::Service { .. } => 1,
        };
        let results: Vec<(Account, Result<Vec<UserReport>, Error>)> = stream::iter(selected)
            .map(|account| {
                let (base, caller, audit, progress) = (&base, &caller, &audit, &progress);
                async move {
                    let result = async {
                        if self.stop_at.is_some_and(|at| Instant::now() >= at) {
                            return Err(Error::TimeLimit);
                        }
                        let aws = accounts::context_for(
                            base,
                            caller,
                            accounts_config,
                            &account,
                            &self.run_id,
                        )
                        .await
                        .map_err(Error::from)?;
                        let planned = self.plan(subject, &aws, Some(&account)).await?;
                        self.check_stores(&planned.targets).await?;
                        progress.grow(planned.targets.len() as u64);
                        Ok::<_, Error>(
                            self.rotate_account(
                                &aws,
                                planned,
                                per_account,
                                audit,
                                progress,
                                Some(&account),
                                Some(account.id.clone()),
                            )
                            .await,
                        )
                    }
                    .await;
                    if let Err(e) = &result {
                        tracing::error!("account {}: {e}", account.id);
                    }
                    (account, result)
                }
            })
            .buffer_unordered(accounts_config.concurrency)
            .collect()
            .await;
        progress.finish();
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for (account, result) in results {
            match result {
                Ok(r) => reports.extend(r),
                Err(e) => failures.push(AccountFailure {
                    account,
                    error: e.to_string(),
                }),
            }
        }
        reports.sort_by(|a, b| (&a.account, &a.user).cmp(&(&b.account, &b.user)));
        failures.sort_by(|a, b| a.account.id.cmp(&b.account.id));
        if let (true, Subject::Path { iam_path, .. }) =
            (reports.is_empty() && failures.is_empty(), subject)
        {
            return Err(no_users_at(iam_path));
        }
        self.conclude(&base, reports, failures, audit).await
    }

    /// The users to rotate in one account (`None`: the caller's, without `[accounts]`),
    /// checked before any change.
    async fn plan(
        &self,
        subject: &Subject<'_>,
        aws: &AwsContext,
        account: Option<&Account>,
    ) -> Result<Planned, Error> {
        let config = self.config;
        let mut hooks = self.hooks();
        match subject {
            Subject::Service { service, terraform } => {
                let env = self
                    .store_env(aws, service.tags.clone())
                    .for_account(account.cloned());
                let also = paths_of_user(config, aws, &env, service).await?;
                let target = self.target(
                    &env,
                    &service.iam_user,
                    Some(&service.name),
                    &service.stores,
                    &service.policy,
                    &also,
                );
                hooks.add(&service.iam_user, &service.after_rotate);
                for shared in &also {
                    hooks.add(&service.iam_user, &shared.hooks);
                }
                let (mut external, mut apply) = (None, None);
                // Terraform made the key: read it before anything else.
                if let Some(tf) = &service.terraform {
                    let bin = terraform::find_binary(terraform.bin)?;
                    let key = terraform::read_key(&bin, &tf.dir, &tf.output_prefix).await?;
                    if let (true, Some(address)) = (terraform.apply, &tf.resource) {
                        let in_state = terraform::state_has(&bin, &tf.dir, address).await?;
                        let checked = match self.args.dry_run {
                            true => Some(terraform::plan_target(&bin, &tf.dir, address).await?),
                            false => None,
                        };
                        let maker = terraform::TerraformKeyMaker {
                            bin,
                            dir: tf.dir.clone(),
                            prefix: tf.output_prefix.clone(),
                            address: address.clone(),
                            previous: key.id.clone(),
                        };
                        apply = Some(TerraformApply {
                            maker: Arc::new(maker),
                            in_state,
                            checked,
                        });
                    }
                    external = Some(key);
                }
                Ok(Planned {
                    targets: vec![target],
                    hooks,
                    external,
                    terraform: apply,
                })
            }
            Subject::Path {
                iam_path,
                stores,
                policy,
                ..
            } => {
                let users = aws.iam().list_users(iam_path).await?;
                // Across accounts, a path may well be empty in some of them.
                if users.is_empty() && account.is_none() {
                    return Err(no_users_at(iam_path));
                }
                tracing::info!(users = users.len(), path = %iam_path, account = account.map(|a| a.id.as_str()), "rotating");
                // One environment for every user: AWS clients are made once per region.
                let env = self
                    .store_env(aws, Vec::new())
                    .for_account(account.cloned());
                let targets: Vec<Target> = users
                    .iter()
                    .map(|u| {
                        let also = services_of_user(config, &u.name, None, account);
                        self.target(&env, &u.name, None, stores, policy, &also)
                    })
                    .collect();
                let services = service_locations(config, &env);
                for target in &targets {
                    refuse_foreign_stores(&target.user, &target.stores, &services)?;
                }
                let path_hooks = config
                    .path_policy(iam_path)
                    .map(|p| p.after_rotate.clone())
                    .unwrap_or_default();
                for user in &users {
                    hooks.add(&user.name, &path_hooks);
                    for shared in services_of_user(config, &user.name, None, account) {
                        hooks.add(&user.name, &shared.hooks);
                    }
                }
                Ok(Planned {
                    targets,
                    hooks,
                    external: None,
                    terraform: None,
                })
            }
        }
    }

    /// The checks of each kind of store (is op signed in?), once per kind over every
    /// user, since users that other sections share have more; a failure stops the run (or
    /// the account) before any store is read or IAM is changed.
    async fn check_stores(&self, targets: &[Target]) -> Result<(), Error> {
        let files: Vec<std::path::PathBuf> = targets
            .iter()
            .flat_map(|t| &t.stores)
            .filter_map(|s| s.local_file().map(Path::to_path_buf))
            .collect();
        crate::gitcheck::warn_unignored(&files);
        let mut checked = std::collections::BTreeSet::new();
        for store in targets.iter().flat_map(|t| &t.stores) {
            let location = store.location();
            let kind = location.split(':').next().unwrap_or_default().to_string();
            if checked.insert(kind) {
                store.check_run().await?;
            }
        }
        Ok(())
    }

    /// Rotate the planned users of one account with that account's clients; every report
    /// names the account. `hook_account` is CREDROT_ACCOUNT for the hooks.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_account(
        &self,
        aws: &AwsContext,
        planned: Planned,
        concurrency: usize,
        audit: &Option<Arc<AuditLog>>,
        progress: &RunProgress,
        account: Option<&Account>,
        hook_account: Option<String>,
    ) -> Vec<UserReport> {
        let dry_run = self.args.dry_run;
        let mut events: Arc<dyn EventSink> = match audit {
            Some(log) => log.clone(),
            None => Arc::new(DiscardEvents),
        };
        let mut inflight = InflightRecords::default_location();
        if let Some(account) = account {
            events = Arc::new(AccountEvents {
                inner: events,
                account: account.id.clone(),
            });
            inflight = inflight.map(|r| r.for_account(&account.id));
        }
        let Planned {
            targets,
            mut hooks,
            external,
            terraform,
        } = planned;
        let mut engine = Engine::new(
            Arc::new(aws.iam()),
            Arc::new(aws.verifier()),
            events,
            EngineOptions {
                dry_run,
                force: self.args.force || terraform.as_ref().is_some_and(|t| !t.in_state),
                verify_timeout: self.args.verify_timeout,
                lock_ttl: (!self.args.no_lock).then_some(self.args.lock_ttl),
                run_id: self.run_id.clone(),
                inflight,
                stop_at: self.stop_at,
            },
        );
        if let Some(apply) = &terraform {
            engine = engine.with_key_maker(apply.maker.clone());
        }
        // Hooks never run on a dry run.
        if !dry_run && !hooks.is_empty() {
            hooks.set_account(hook_account);
            engine = engine.with_after_rotate(Arc::new(hooks));
        }
        let on_done = |report: &UserReport| {
            progress.done(report);
            if let Some(log) = audit {
                log.checkpoint();
            }
        };
        let mut reports = match (external, targets.first()) {
            (Some(key), Some(target)) => {
                let mut report = engine.hand_off_key(target, key).await;
                // --terraform-apply, once the stores hold Terraform's key: a rotation whose
                // new key Terraform makes (a run that stopped after `apply` hands that key
                // on above and stops there, which is how it converges).
                if let (Some(apply), Outcome::Fresh) = (&terraform, report.outcome) {
                    if !apply.in_state {
                        tracing::warn!(address = %apply.maker.address, "Terraform's state does not hold terraform_resource (a run stopped after `terraform state rm`?): the new key is made now");
                    }
                    report = engine.rotate_user(target).await;
                    if let Some(checked) = &apply.checked {
                        report.actions.insert(
                            0,
                            format!(
                                "checked terraform plan -target={} (before state rm, so it plans no new key yet): {checked}",
                                apply.maker.address
                            ),
                        );
                    }
                }
                on_done(&report);
                vec![report]
            }
            _ => engine.rotate_many(targets, concurrency, &on_done).await,
        };
        if let Some(account) = account {
            for report in &mut reports {
                report.account = Some(account.id.clone());
                report.account_name = Some(account.name.clone());
            }
        }
        reports
    }

    /// The end of a run: the summary, the audit log closed, the notice, the exit code.
    async fn conclude(
        &self,
        aws: &AwsContext,
        reports: Vec<UserReport>,
        failures: Vec<AccountFailure>,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<(), Error> {
        let dry_run = self.args.dry_run;
        let audited = match &audit {
            Some(log) => Some(log.finish().await),
            None => None,
        };
        let printed = self.printer.as_ref().map(|printer| printer.finish());
        // With --print-secrets stdout carries the keys alone, so the summary goes to stderr.
        let summary_written = {
            let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
            let out: &mut dyn std::io::Write = match &self.printer {
                Some(_) => &mut stderr,
                None => &mut stdout,
            };
            let accounts = self
                .config
                .accounts
                .is_some()
                .then(|| output::account_totals(&reports, &failures));
            output::write_summary(
                out,
                &reports,
                accounts.as_deref(),
                dry_run,
                &aws.calls(),
                self.global.output,
            )
        };
        let audit_error = match &audited {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let summary = audited.as_ref().and_then(|r| r.as_ref().ok());
        let hook_failures: Vec<String> = reports
            .iter()
            .flat_map(|r| {
                r.failed_hooks().map(move |h| {
                    format!(
                        "{}{}: after_rotate hook {} failed (the rotation stands): {}",
                        r.account
                            .as_deref()
                            .map(|a| format!("{a}/"))
                            .unwrap_or_default(),
                        r.user,
                        h.hook,
                        h.error.as_deref().unwrap_or("failed")
                    )
                })
            })
            .collect();
        let mut errors: Vec<String> = audit_error.into_iter().collect();
        errors.extend(
            failures
                .iter()
                .map(|f| format!("account {}: {}", f.account.id, f.error)),
        );
        errors.extend(hook_failures.iter().cloned());
        self.notify(&reports, errors, summary).await;
        let failed = reports
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count();
        let busy = reports
            .iter()
            .filter(|r| r.outcome == Outcome::Busy)
            .count();
        if failed > 0 || !failures.is_empty() {
            if let Some(Err(e)) = audited {
                // Both end in exit 1; the users' failures are the error, this one is told.
                tracing::error!("{e}");
            }
            return Err(Error::RunFailed {
                failed,
                total: reports.len(),
                accounts: failures.len(),
            });
        }
        match printed {
            // Keys went out and the document could not be closed: whether its reader got
            // them is unknown, so this is never the quiet exit of a closed pipe.
            Some(Err(e)) if e.printed > 0 => return Err(Error::SecretOutput(e)),
            // No key was printed: an empty document that cannot be written carries no secret.
            Some(Err(e)) => return Err(e.source.into()),
            _ => {}
        }
        if let Some(Err(e)) = audited {
            return Err(e.into());
        }
        summary_written?;
        if !hook_failures.is_empty() {
            return Err(Error::HooksFailed {
                hooks: hook_failures.len(),
                users: reports
                    .iter()
                    .filter(|r| r.failed_hooks().next().is_some())
                    .count(),
            });
        }
        if busy > 0 && self.args.fail_on == Some(RunGate::Busy) {
            return Err(Error::GateTripped {
                verdict: "busy".into(),
                users: busy,
            });
        }
        Ok(())
    }
}

/// This run's identity in lock tags, audit lines, notices and default CloudWatch stream
/// names: start time and process id, so unique across runs and sortable by time.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "credrot-{}-{:09}-{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}
