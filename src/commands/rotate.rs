//! `credrot update SERVICE` and `credrot rotate --path PATH`.

use super::context::{
    load_aws, no_users_at, open_target, path_settings, runtime, CredentialSource,
};
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
    DiscardEvents, Engine, EngineOptions, EventSink, InflightRecords, Outcome, Target, UserReport,
};
use crate::secret::AccessKey;
use crate::store::{self, Outfile, SecretPrinter, SecretStore, StoreEnv, TemplateValues};
use crate::terraform;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Rotate the IAM user of one configured service.
pub fn update(
    config: &Config,
    name: &str,
    terraform_bin: Option<&std::path::Path>,
    global: &GlobalArgs,
    args: &RotationArgs,
) -> Result<(), Error> {
    let service = config.service(name)?;
    let job = Job::prepare(
        config,
        &service.stores,
        global,
        args,
        &format!("service '{name}'"),
        "[[services.NAME.stores]]",
        format!("update {name}"),
    )?;
    job.run(async {
        let aws = load_aws(config, global, service.region.as_deref()).await?;
        let env = job.store_env(&aws, service.tags.clone());
        let also = paths_of_user(config, &aws, &env, service).await?;
        let target = job.target(
            &env,
            &service.iam_user,
            Some(&service.name),
            &service.stores,
            &service.policy,
            &also,
        );
        let mut hooks = job.hooks();
        hooks.add(&service.iam_user, &service.after_rotate);
        for shared in &also {
            hooks.add(&service.iam_user, &shared.hooks);
        }
        let external = match &service.terraform {
            // Terraform made the key: read it before anything else; IAM is left alone.
            Some(tf) => {
                let bin = terraform::find_binary(terraform_bin)?;
                Some(terraform::read_key(&bin, &tf.dir, &tf.output_prefix).await?)
            }
            None => None,
        };
        job.execute(&aws, vec![target], 1, external, hooks).await
    })
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
    job.run(async {
        let aws = load_aws(config, global, None).await?;
        let users = aws.iam().list_users(&iam_path).await?;
        if users.is_empty() {
            return Err(no_users_at(&iam_path));
        }
        tracing::info!(users = users.len(), path = %iam_path, "rotating");
        // One environment for every user: AWS clients are made once per region, not per user.
        let env = job.store_env(&aws, Vec::new());
        let targets: Vec<Target> = users
            .iter()
            .map(|u| {
                let also = services_of_user(config, &u.name, None);
                job.target(&env, &u.name, None, &stores, &policy, &also)
            })
            .collect();
        let services = service_locations(config, &env);
        for target in &targets {
            refuse_foreign_stores(&target.user, &target.stores, &services)?;
        }
        let mut hooks = job.hooks();
        let path_hooks = config
            .path_policy(&iam_path)
            .map(|p| p.after_rotate.clone())
            .unwrap_or_default();
        for user in &users {
            hooks.add(&user.name, &path_hooks);
            for shared in services_of_user(config, &user.name, None) {
                hooks.add(&user.name, &shared.hooks);
            }
        }
        job.execute(&aws, targets, concurrency, None, hooks).await
    })
}

/// Stores of another section of services.toml that hand out the same IAM user's key, with
/// the service name their templates use.
struct SharedStores {
    service: Option<String>,
    stores: Vec<StoreConfig>,
    /// The section's `after_rotate` hooks: its consumers need the new key too.
    hooks: Vec<Hook>,
}

/// The stores of every service whose `iam_user` is `user`, except `except`.
fn services_of_user(config: &Config, user: &str, except: Option<&str>) -> Vec<SharedStores> {
    config
        .services
        .values()
        .filter(|s| s.iam_user == user && Some(s.name.as_str()) != except)
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
        let users = aws.iam().list_users(path).await?;
        for user in users.iter().filter(|u| u.name != service.iam_user) {
            let values = TemplateValues {
                user: &user.name,
                service: None,
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
            };
            for config in &shared.stores {
                let store = store::open(config, &values, env);
                if !seen.contains(&store.location()) {
                    seen.push(store.location());
                    target.stores.push(store);
                }
            }
        }
        let outfile = self
            .outfile
            .as_ref()
            .map(|file| Arc::new(file.store_for(user)) as Arc<dyn SecretStore>);
        target.stores.extend(outfile.clone());
        // Last, so that a key is printed only once every store has it and it is verified,
        // and a key that cannot be printed is rolled back like any failed store step.
        if let Some(printer) = &self.printer {
            target
                .stores
                .push(Arc::new(printer.store_for(user, outfile)));
        }
        target
    }

    async fn execute(
        &self,
        aws: &AwsContext,
        targets: Vec<Target>,
        concurrency: usize,
        external_key: Option<AccessKey>,
        mut hooks: HookRunner,
    ) -> Result<(), Error> {
        let dry_run = self.args.dry_run;
        // Every target has the same kinds of stores, so the first one's run-level checks
        // (e.g. that op is signed in) hold for all; a failure stops the run before any
        // store is read or IAM is changed.
        // The checks are per kind of store (is op signed in?), not per user: one store of
        // each kind, over every user, since users that other sections share have more.
        let files: Vec<std::path::PathBuf> = targets
            .iter()
            .flat_map(|t| &t.stores)
            .filter_map(|s| s.local_file().map(std::path::Path::to_path_buf))
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
        let audit = self.start_audit(aws).await?;
        let events: Arc<dyn EventSink> = match &audit {
            Some(log) => log.clone(),
            None => Arc::new(DiscardEvents),
        };
        let mut engine = Engine::new(
            Arc::new(aws.iam()),
            Arc::new(aws.verifier()),
            events,
            EngineOptions {
                dry_run,
                force: self.args.force,
                verify_timeout: self.args.verify_timeout,
                lock_ttl: (!self.args.no_lock).then_some(self.args.lock_ttl),
                run_id: self.run_id.clone(),
                inflight: InflightRecords::default_location(),
            },
        );
        // Hooks never run on a dry run; CREDROT_ACCOUNT is the run's account, when STS says.
        if !dry_run && !hooks.is_empty() {
            hooks.set_account(
                aws.caller_arn()
                    .await
                    .ok()
                    .and_then(|arn| HookRunner::account_of(&arn)),
            );
            engine = engine.with_after_rotate(Arc::new(hooks));
        }
        let progress = RunProgress::new(targets.len() as u64, self.global.quiet);
        let on_done = |report: &UserReport| {
            progress.done(report);
            if let Some(log) = &audit {
                log.checkpoint();
            }
        };
        let reports = match (external_key, targets.first()) {
            (Some(key), Some(target)) => {
                let report = engine.hand_off_key(target, key).await;
                on_done(&report);
                vec![report]
            }
            _ => engine.rotate_many(targets, concurrency, &on_done).await,
        };
        progress.finish();
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
            output::write_summary(out, &reports, dry_run, &aws.calls(), self.global.output)
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
                        "{}: after_rotate hook {} failed (the rotation stands): {}",
                        r.user,
                        h.hook,
                        h.error.as_deref().unwrap_or("failed")
                    )
                })
            })
            .collect();
        let mut errors: Vec<String> = audit_error.into_iter().collect();
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
        if failed > 0 {
            if let Some(Err(e)) = audited {
                // Both end in exit 1; the users' failures are the error, this one is told.
                tracing::error!("{e}");
            }
            return Err(Error::RunFailed {
                failed,
                total: reports.len(),
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
