//! `credrot update SERVICE` and `credrot rotate --path PATH`.

use super::context::{load_aws, open_target, path_settings, runtime};
use crate::aws::{AwsContext, IamApi};
use crate::cli::{GlobalArgs, RotationArgs};
use crate::config::{normalize_iam_path, Config, StoreConfig};
use crate::error::Error;
use crate::output::{self, SecretPrinter};
use crate::policy::RotationPolicy;
use crate::rotation::{
    DiscardEvents, Engine, EngineOptions, LockOptions, Outcome, Target, UserReport,
};
use crate::secret::AccessKey;
use crate::store::{Outfile, SecretStore, StoreEnv};
use crate::terraform;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

/// Rotate the IAM user of one configured service.
pub fn update(
    config: &Config,
    name: &str,
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
    )?;
    runtime()?.block_on(async {
        let aws = load_aws(config, global, service.region.as_deref()).await;
        let env = job.store_env(&aws, service.tags.clone());
        let target = job.target(
            &env,
            &service.iam_user,
            Some(&service.name),
            &service.stores,
            &service.policy,
        );
        let external = match &service.terraform {
            // Terraform made the key: read it before anything else; IAM is left alone.
            Some(tf) => {
                let bin = terraform::find_binary(args.terraform_bin.as_deref())?;
                Some(terraform::read_key(&bin, &tf.dir, &tf.output_prefix).await?)
            }
            None => None,
        };
        job.execute(&aws, vec![target], 1, external).await
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
    )?;
    runtime()?.block_on(async {
        let aws = load_aws(config, global, None).await;
        let users = aws.iam().list_users(&iam_path).await?;
        if users.is_empty() {
            return Err(Error::Usage(format!(
                "no IAM user has the path {iam_path}; IAM paths are case-sensitive: check it with 'aws iam list-users --path-prefix {iam_path}'"
            )));
        }
        tracing::info!(users = users.len(), path = %iam_path, "rotating");
        // One environment for every user: AWS clients are made once per region, not per user.
        let env = job.store_env(&aws, Vec::new());
        let targets = users
            .iter()
            .map(|u| job.target(&env, &u.name, None, &stores, &policy))
            .collect();
        job.execute(&aws, targets, concurrency, None).await
    })
}

/// One `update`/`rotate` invocation, checked before any AWS call.
struct Job<'a> {
    config: &'a Config,
    global: &'a GlobalArgs,
    args: &'a RotationArgs,
    outfile: Option<Arc<Outfile>>,
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
    ) -> Result<Self, Error> {
        if stores.is_empty() && args.outfile.is_none() && !args.print_secrets {
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
        Ok(Job {
            config,
            global,
            args,
            outfile,
        })
    }

    /// What the stores of this run share; `tags` are the service's.
    fn store_env(&self, aws: &AwsContext, tags: Vec<String>) -> StoreEnv {
        StoreEnv::new(aws.clone(), self.config.base_dir.clone(), tags)
    }

    fn target(
        &self,
        env: &StoreEnv,
        user: &str,
        service: Option<&str>,
        stores: &[StoreConfig],
        policy: &RotationPolicy,
    ) -> Target {
        let outfile = self
            .outfile
            .as_ref()
            .map(|file| Arc::new(file.store_for(user)) as Arc<dyn SecretStore>);
        open_target(env, user, service, stores, policy, outfile)
    }

    async fn execute(
        &self,
        aws: &AwsContext,
        targets: Vec<Target>,
        concurrency: usize,
        external_key: Option<AccessKey>,
    ) -> Result<(), Error> {
        let dry_run = self.args.dry_run;
        // Every target has the same kinds of stores, so the first one's run-level checks
        // (e.g. that op is signed in) hold for all; a failure stops the run before any
        // store is read or IAM is changed.
        if let Some(first) = targets.first() {
            for store in &first.stores {
                store.check_run().await?;
            }
        }
        let engine = Engine::new(
            Arc::new(aws.iam()),
            Arc::new(aws.verifier()),
            Arc::new(DiscardEvents),
            EngineOptions {
                dry_run,
                force: self.args.force,
                verify_timeout: self.args.verify_timeout,
                lock: (!self.args.no_lock).then(|| LockOptions {
                    owner: run_id(),
                    ttl: self.args.lock_ttl,
                }),
            },
        );
        let progress = progress_bar(targets.len() as u64, self.global.quiet);
        let printer = (self.args.print_secrets && !dry_run).then(SecretPrinter::default);
        let print_failure = std::sync::Mutex::new(None);
        let on_done = |report: &UserReport| {
            progress.inc(1);
            if let Some(printer) = &printer {
                if let Err(e) = printer.emit(report) {
                    print_failure.lock().expect("lock").get_or_insert(e);
                }
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
        progress.finish_and_clear();
        if let Some(printer) = &printer {
            printer.finish()?;
        }
        if let Some(e) = print_failure.into_inner().expect("lock") {
            return Err(e.into());
        }
        // With --print-secrets stdout carries the keys alone, so the summary goes to stderr.
        if self.args.print_secrets && !dry_run {
            output::write_summary(
                &mut std::io::stderr().lock(),
                &reports,
                dry_run,
                self.global.output,
            )?;
        } else {
            output::write_summary(
                &mut std::io::stdout().lock(),
                &reports,
                dry_run,
                self.global.output,
            )?;
        }
        let failed = reports
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count();
        if failed > 0 {
            return Err(Error::RunFailed {
                failed,
                total: reports.len(),
            });
        }
        Ok(())
    }
}

/// This run's identity in lock tags: host-independent, unique enough across runs.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("credrot-{}-{nanos:09}", std::process::id())
}

/// A progress bar on stderr when stdout is a terminal; hidden otherwise.
fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stdout().is_terminal() || len < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} rotating [{bar:30}] {pos}/{len} users ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
