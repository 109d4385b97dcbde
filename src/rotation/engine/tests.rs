//! Unit tests of the engine against in-memory IAM, STS and stores.
//!
//! The fakes model only what the engine relies on: IAM's two-key limit and `NotFound` on
//! delete, STS accepting a key only while IAM has it (optionally after a propagation delay),
//! and stores that hand out one key and can fail at each step. Besides each scenario's own
//! assertions, `Fixture::assert_safe` checks the engine's invariants: no key is deleted while
//! a store hands it out, and no key the run created is left in IAM without a store holding it.

use super::*;
use crate::aws::{user_name_from_arn, AwsErrorKind, IamUser, KeyMeta, KeyUse};
use crate::rotation::MAX_KEYS;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

const USER: &str = "app";
const IAM_PATH: &str = "credrot";
/// Keys the fake creates get ids with this prefix, so a test can aim a failure at them.
const NEW_PREFIX: &str = "AKIANEW";
/// Seeded keys are dated before this instant, created ones after it, so "newest" is certain.
const T0_SECS: u64 = 1_700_000_000;

fn aws_error(operation: &'static str, kind: AwsErrorKind, message: &str) -> AwsError {
    AwsError {
        operation,
        code: None,
        message: message.to_string(),
        kind,
    }
}

// ---------------------------------------------------------------------------------------
// FakeIam

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IamOp {
    ListUsers,
    ListKeys,
    Create,
    Delete,
}

struct FakeKey {
    meta: KeyMeta,
    secret: String,
}

#[derive(Default)]
struct IamState {
    users: BTreeMap<String, Vec<FakeKey>>,
    calls: BTreeMap<IamOp, usize>,
    /// `(user, key id)` of every key `create_key` made, in order.
    created: Vec<(String, String)>,
    /// Fail calls of this operation whose subject (the key id for a delete, else the user)
    /// starts with the prefix.
    failure: Option<(IamOp, String)>,
    /// Keys deleted while a watched store handed them out.
    violations: Vec<String>,
    /// Tags on users (the staged-retirement state).
    tags: BTreeMap<String, BTreeMap<String, String>>,
    /// A key another run creates just before this run's next CreateAccessKey lands.
    racing_key: Option<String>,
}

#[derive(Default)]
struct FakeIam {
    state: Mutex<IamState>,
    /// Stores checked on every delete: deleting their key would break their consumers.
    watched: Mutex<Vec<Arc<MemoryStore>>>,
}

impl FakeIam {
    fn lock(&self) -> MutexGuard<'_, IamState> {
        self.state.lock().unwrap()
    }

    fn add_user(&self, user: &str) {
        self.lock().users.entry(user.to_string()).or_default();
    }

    /// Give `user` an existing key `age_days` old, bypassing the two-key limit so tests can
    /// also build states IAM would refuse. Returns the key as a store would hold it.
    fn seed(&self, user: &str, id: &str, active: bool, age_days: u64) -> AccessKey {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(T0_SECS - age_days * 86_400);
        self.seed_created(user, id, active, created)
    }

    /// Like `seed`, for a key created at `created` (the fake's clock is fixed in the past;
    /// keys seeded at the real now are the ones a run in progress has just made).
    fn seed_created(&self, user: &str, id: &str, active: bool, created: SystemTime) -> AccessKey {
        let secret = format!("secret-of-{id}");
        let key = FakeKey {
            meta: KeyMeta {
                id: id.to_string(),
                active,
                created,
            },
            secret: secret.clone(),
        };
        self.lock()
            .users
            .entry(user.to_string())
            .or_default()
            .push(key);
        AccessKey::new(id, secret)
    }

    /// The user's key ids, oldest first.
    fn key_ids(&self, user: &str) -> Vec<String> {
        let state = self.lock();
        let mut keys: Vec<&FakeKey> = state.users[user].iter().collect();
        keys.sort_by_key(|k| k.meta.created);
        keys.iter().map(|k| k.meta.id.clone()).collect()
    }

    /// The user that `key` authenticates as: IAM has it, Active, with this very secret.
    fn owner(&self, key: &AccessKey) -> Option<String> {
        let state = self.lock();
        state
            .users
            .iter()
            .find(|(_, keys)| {
                keys.iter()
                    .any(|k| k.meta.id == key.id && k.meta.active && k.secret == key.expose())
            })
            .map(|(user, _)| user.clone())
    }

    fn calls(&self, op: IamOp) -> usize {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    fn fail_on(&self, op: IamOp, subject_prefix: &str) {
        self.lock().failure = Some((op, subject_prefix.to_string()));
    }

    fn heal(&self) {
        self.lock().failure = None;
    }

    fn watch(&self, store: Arc<MemoryStore>) {
        self.watched.lock().unwrap().push(store);
    }

    /// Count the call and apply the injected failure, if it matches.
    fn enter(&self, op: IamOp, subject: &str) -> Result<MutexGuard<'_, IamState>, AwsError> {
        let mut state = self.lock();
        *state.calls.entry(op).or_default() += 1;
        match &state.failure {
            Some((fail_op, prefix)) if *fail_op == op && subject.starts_with(prefix.as_str()) => {
                Err(aws_error(
                    "iam:fake",
                    AwsErrorKind::Other,
                    "injected failure",
                ))
            }
            _ => Ok(state),
        }
    }
}

#[async_trait]
impl IamApi for FakeIam {
    async fn list_users(&self, _path: &str) -> Result<Vec<IamUser>, AwsError> {
        let state = self.enter(IamOp::ListUsers, "")?;
        Ok(state
            .users
            .keys()
            .map(|name| IamUser {
                name: name.clone(),
                path: format!("/{IAM_PATH}/"),
            })
            .collect())
    }

    async fn list_keys(&self, user: &str) -> Result<Vec<KeyMeta>, AwsError> {
        let state = self.enter(IamOp::ListKeys, user)?;
        match state.users.get(user) {
            Some(keys) => Ok(keys.iter().map(|k| k.meta.clone()).collect()),
            None => Err(aws_error(
                "iam:ListAccessKeys",
                AwsErrorKind::NotFound,
                "no such user",
            )),
        }
    }

    async fn create_key(&self, user: &str) -> Result<(KeyMeta, AccessKey), AwsError> {
        let mut state = self.enter(IamOp::Create, user)?;
        if let Some(id) = state.racing_key.take() {
            drop(state);
            self.seed_created(user, &id, true, SystemTime::now());
            state = self.lock();
        }
        let n = state.created.len() + 1;
        let keys = state.users.get_mut(user).ok_or_else(|| {
            aws_error(
                "iam:CreateAccessKey",
                AwsErrorKind::NotFound,
                "no such user",
            )
        })?;
        if keys.len() >= MAX_KEYS {
            return Err(aws_error(
                "iam:CreateAccessKey",
                AwsErrorKind::LimitExceeded,
                "LimitExceeded: cannot exceed quota for AccessKeysPerUser: 2",
            ));
        }
        let meta = KeyMeta {
            id: format!("{NEW_PREFIX}{n:05}"),
            active: true,
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(T0_SECS + n as u64),
        };
        let secret = format!("new-secret-{n}");
        keys.push(FakeKey {
            meta: meta.clone(),
            secret: secret.clone(),
        });
        state.created.push((user.to_string(), meta.id.clone()));
        Ok((meta.clone(), AccessKey::new(meta.id, secret)))
    }

    async fn delete_key(&self, user: &str, key_id: &str) -> Result<(), AwsError> {
        let mut state = self.enter(IamOp::Delete, key_id)?;
        let keys = state.users.get_mut(user);
        let Some(pos) = keys
            .as_ref()
            .and_then(|keys| keys.iter().position(|k| k.meta.id == key_id))
        else {
            return Err(aws_error(
                "iam:DeleteAccessKey",
                AwsErrorKind::NotFound,
                "no such key",
            ));
        };
        keys.unwrap().remove(pos);
        let held_by_a_store = self
            .watched
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.held_id().as_deref() == Some(key_id));
        if held_by_a_store {
            state.violations.push(key_id.to_string());
        }
        Ok(())
    }

    async fn set_key_active(&self, user: &str, key_id: &str, active: bool) -> Result<(), AwsError> {
        let mut state = self.lock();
        let key = state
            .users
            .get_mut(user)
            .and_then(|keys| keys.iter_mut().find(|k| k.meta.id == key_id))
            .ok_or_else(|| {
                aws_error("iam:UpdateAccessKey", AwsErrorKind::NotFound, "no such key")
            })?;
        key.meta.active = active;
        Ok(())
    }

    async fn last_used(&self, _key_id: &str) -> Result<Option<KeyUse>, AwsError> {
        // The engine tests model no consumers: keys are never used by anyone.
        Ok(None)
    }

    async fn user_tags(&self, user: &str) -> Result<BTreeMap<String, String>, AwsError> {
        Ok(self.lock().tags.get(user).cloned().unwrap_or_default())
    }

    async fn tag_user(&self, user: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let mut state = self.lock();
        let tags = state.tags.entry(user.to_string()).or_default();
        tags.insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn untag_user(&self, user: &str, keys: &[String]) -> Result<(), AwsError> {
        if let Some(tags) = self.lock().tags.get_mut(user) {
            tags.retain(|k, _| !keys.contains(k));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// FakeVerifier

/// STS `GetCallerIdentity`: accepts exactly the keys IAM accepts, after `reject_first`
/// Unauthenticated answers that model IAM's propagation delay.
struct FakeVerifier {
    iam: Arc<FakeIam>,
    rejections_left: AtomicUsize,
    attempts: AtomicUsize,
    /// Delete the key under verification from IAM first, as a concurrent run might.
    deletes_the_key: std::sync::atomic::AtomicBool,
}

impl FakeVerifier {
    fn reject_first(&self, n: usize) {
        self.rejections_left.store(n, Ordering::SeqCst);
    }

    fn reject_always(&self) {
        self.reject_first(usize::MAX);
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KeyVerifier for FakeVerifier {
    async fn caller_arn(&self, key: &AccessKey) -> Result<String, AwsError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let unauthenticated = || {
            aws_error(
                "sts:GetCallerIdentity",
                AwsErrorKind::Unauthenticated,
                "InvalidClientTokenId: the security token included in the request is invalid",
            )
        };
        if self.deletes_the_key.load(Ordering::SeqCst) {
            for keys in self.iam.lock().users.values_mut() {
                keys.retain(|k| k.meta.id != key.id);
            }
        }
        let propagating = self
            .rejections_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if propagating {
            return Err(unauthenticated());
        }
        let user = self.iam.owner(key).ok_or_else(unauthenticated)?;
        Ok(format!("arn:aws:iam::123456789012:user/{IAM_PATH}/{user}"))
    }
}

// ---------------------------------------------------------------------------------------
// MemoryStore

#[derive(Debug, Clone, PartialEq, Eq)]
enum StoreOp {
    Write(String),
    Promote(String),
    Restore(Option<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Write,
    Promote,
    Restore,
}

#[derive(Default)]
struct StoreState {
    held: Option<AccessKey>,
    /// Every mutating call attempted, failed ones included, in order.
    ops: Vec<StoreOp>,
    fail: Option<Step>,
}

struct MemoryStore {
    name: String,
    state: Mutex<StoreState>,
}

impl MemoryStore {
    fn new(name: &str, held: Option<&AccessKey>) -> Arc<Self> {
        Arc::new(MemoryStore {
            name: name.to_string(),
            state: Mutex::new(StoreState {
                held: held.cloned(),
                ..StoreState::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap()
    }

    fn held(&self) -> Option<AccessKey> {
        self.lock().held.clone()
    }

    fn held_id(&self) -> Option<String> {
        self.lock().held.as_ref().map(|k| k.id.clone())
    }

    fn ops(&self) -> Vec<StoreOp> {
        self.lock().ops.clone()
    }

    fn fail_on(&self, step: Step) {
        self.lock().fail = Some(step);
    }

    fn heal(&self) {
        self.lock().fail = None;
    }

    /// Record the attempt; fail it if told to, leaving the held key as it was.
    fn step(&self, step: Step, op: StoreOp) -> Result<MutexGuard<'_, StoreState>, StoreError> {
        let mut state = self.lock();
        state.ops.push(op);
        if state.fail == Some(step) {
            let action = match step {
                Step::Write => "write",
                Step::Promote => "promote",
                Step::Restore => "restore",
            };
            return Err(StoreError {
                store: self.location(),
                action,
                reason: "injected failure".into(),
            });
        }
        Ok(state)
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    fn location(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn read(&self) -> Result<Option<AccessKey>, StoreError> {
        Ok(self.held())
    }

    async fn write(&self, key: &AccessKey, _ctx: &WriteContext) -> Result<(), StoreError> {
        self.step(Step::Write, StoreOp::Write(key.id.clone()))?.held = Some(key.clone());
        Ok(())
    }

    async fn promote(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.step(Step::Promote, StoreOp::Promote(key.id.clone()))
            .map(drop)
    }

    async fn restore(
        &self,
        previous: Option<&AccessKey>,
        _ctx: &WriteContext,
    ) -> Result<(), StoreError> {
        let op = StoreOp::Restore(previous.map(|k| k.id.clone()));
        self.step(Step::Restore, op)?.held = previous.cloned();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Fixture

struct Fixture {
    iam: Arc<FakeIam>,
    verifier: Arc<FakeVerifier>,
    options: EngineOptions,
}

impl Fixture {
    fn new() -> Self {
        let iam = Arc::new(FakeIam::default());
        iam.add_user(USER);
        let verifier = Arc::new(FakeVerifier {
            iam: Arc::clone(&iam),
            rejections_left: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            deletes_the_key: Default::default(),
        });
        Fixture {
            iam,
            verifier,
            options: EngineOptions {
                dry_run: false,
                force: false,
                verify_timeout: Duration::from_secs(5),
                lock_ttl: Some(Duration::from_secs(60)),
                run_id: "test-run".into(),
                inflight: None,
                stop_at: None,
            },
        }
    }

    fn dry_run(mut self) -> Self {
        self.options.dry_run = true;
        self
    }

    /// For verifiers that never accept: the engine retries until this runs out.
    fn short_verify_timeout(mut self) -> Self {
        self.options.verify_timeout = Duration::from_secs(1);
        self
    }

    /// An existing key of `USER`.
    fn seed(&self, id: &str, active: bool, age_days: u64) -> AccessKey {
        self.iam.seed(USER, id, active, age_days)
    }

    /// A key of `USER` created `secs` ago by the real clock.
    fn seed_recent(&self, id: &str, secs: u64) -> AccessKey {
        let created = SystemTime::now() - Duration::from_secs(secs);
        self.iam.seed_created(USER, id, true, created)
    }

    fn lock_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.options.lock_ttl = ttl;
        self
    }

    /// A store holding `held`, watched so that deleting its key is caught.
    fn store(&self, name: &str, held: Option<&AccessKey>) -> Arc<MemoryStore> {
        let store = MemoryStore::new(name, held);
        self.iam.watch(Arc::clone(&store));
        store
    }

    fn engine(&self) -> Engine {
        Engine::new(
            self.iam.clone(),
            self.verifier.clone(),
            Arc::new(crate::rotation::DiscardEvents),
            self.options.clone(),
        )
    }

    async fn rotate(&self, stores: &[&Arc<MemoryStore>]) -> UserReport {
        self.engine().rotate_user(&target(USER, stores)).await
    }

    /// The invariants every run must keep, whatever its outcome, over all the fixture's stores.
    fn assert_safe(&self) {
        let state = self.iam.lock();
        assert_eq!(
            state.violations,
            Vec::<String>::new(),
            "deleted keys that a store handed out"
        );
        let stores = self.iam.watched.lock().unwrap();
        for (user, id) in &state.created {
            let in_iam = state.users[user].iter().any(|k| &k.meta.id == id);
            let stored = stores
                .iter()
                .any(|s| s.held_id().as_deref() == Some(id.as_str()));
            assert!(
                !in_iam || stored,
                "created key {id} of {user} is in IAM but in no store"
            );
        }
    }

    /// The run rotated: a new key that IAM and STS accept is promoted in every store.
    async fn assert_rotated(&self, report: &UserReport, stores: &[&Arc<MemoryStore>]) -> AccessKey {
        assert_eq!(
            report.outcome,
            Outcome::Rotated,
            "error: {:?}",
            report.error
        );
        assert_eq!(report.error, None);
        let new = report
            .new_key
            .clone()
            .expect("a rotated report carries the new key");
        assert_eq!(report.created.as_deref(), Some(new.id.as_str()));
        assert!(self.iam.key_ids(&report.user).contains(&new.id));
        for store in stores {
            assert_eq!(
                store.held().as_ref(),
                Some(&new),
                "{} does not hold the new key",
                store.name
            );
            assert_eq!(store.ops().last(), Some(&StoreOp::Promote(new.id.clone())));
        }
        let arn = self
            .verifier
            .caller_arn(&new)
            .await
            .expect("the new key works");
        assert_eq!(user_name_from_arn(&arn), Some(report.user.as_str()));
        self.assert_safe();
        new
    }
}

fn target(user: &str, stores: &[&Arc<MemoryStore>]) -> Target {
    Target {
        user: user.to_string(),
        service: None,
        stores: stores
            .iter()
            .map(|s| Arc::clone(s) as Arc<dyn SecretStore>)
            .collect(),
        policy: RotationPolicy::default(),
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn error_of(report: &UserReport) -> &str {
    assert_eq!(report.outcome, Outcome::Failed);
    report.error.as_deref().expect("a failed report says why")
}

// ---------------------------------------------------------------------------------------
// The CURRENT/LAST cases

#[tokio::test]
async fn a_user_without_keys_gets_one_stored_key() {
    let f = Fixture::new();
    let store = f.store("a", None);
    let report = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(f.iam.key_ids(USER), ids(&[&new.id]));
    assert_eq!(
        store.ops(),
        vec![
            StoreOp::Write(new.id.clone()),
            StoreOp::Promote(new.id.clone())
        ]
    );
    assert_eq!((report.current_before, report.deleted), (None, None));
    assert_eq!(f.iam.calls(IamOp::Delete), 0);
}

#[tokio::test]
async fn one_key_stays_as_last_next_to_the_new_one() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", &new.id]));
    assert_eq!(report.current_before.as_deref(), Some("AKIAOLD"));
    assert_eq!(
        report
            .keys_before
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>(),
        ["AKIAOLD"]
    );
    assert_eq!(report.deleted, None);
    assert_eq!(f.iam.calls(IamOp::Delete), 0);
}

#[tokio::test]
async fn two_active_keys_lose_the_older() {
    let f = Fixture::new();
    f.seed("AKIALAST", true, 60);
    let current = f.seed("AKIACUR", true, 10);
    let store = f.store("a", Some(&current));
    let report = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIACUR", &new.id]));
    assert_eq!(report.current_before.as_deref(), Some("AKIACUR"));
    assert_eq!(report.last_before.as_deref(), Some("AKIALAST"));
    assert_eq!(report.deleted.as_deref(), Some("AKIALAST"));
}

#[tokio::test]
async fn an_inactive_key_is_deleted_rather_than_the_active_one() {
    let f = Fixture::new();
    let active = f.seed("AKIAACT", true, 40);
    f.seed("AKIAINACT", false, 10);
    let store = f.store("a", Some(&active));
    let report = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAACT", &new.id]));
    assert_eq!(report.deleted.as_deref(), Some("AKIAINACT"));
}

#[tokio::test]
async fn every_store_gets_the_new_key() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let stores = [
        f.store("a", Some(&old)),
        f.store("b", Some(&old)),
        f.store("c", Some(&old)),
    ];
    let stores: Vec<&Arc<MemoryStore>> = stores.iter().collect();
    let report = f.rotate(&stores).await;
    f.assert_rotated(&report, &stores).await;
    assert_eq!(report.stores, ["memory:a", "memory:b", "memory:c"]);
}

#[tokio::test]
async fn dry_run_plans_without_changing_anything() {
    let f = Fixture::new().dry_run();
    f.seed("AKIALAST", true, 40);
    let current = f.seed("AKIACUR", true, 5);
    let store = f.store("a", Some(&current));
    let report = f.rotate(&[&store]).await;
    assert_eq!(
        report.outcome,
        Outcome::Planned,
        "error: {:?}",
        report.error
    );
    assert_eq!(report.current_before.as_deref(), Some("AKIACUR"));
    assert_eq!(report.last_before.as_deref(), Some("AKIALAST"));
    assert_eq!(report.deleted.as_deref(), Some("AKIALAST"));
    assert_eq!((report.created, report.new_key), (None, None));
    assert_eq!(
        (f.iam.calls(IamOp::Create), f.iam.calls(IamOp::Delete)),
        (0, 0)
    );
    assert_eq!(f.verifier.attempts(), 0);
    assert_eq!(store.ops(), vec![]);
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIALAST", "AKIACUR"]));
}

#[tokio::test]
async fn dry_run_names_a_lagging_store_without_writing_it() {
    let f = Fixture::new().dry_run();
    let old = f.seed("AKIAOLD", true, 30);
    let newer = f.seed("AKIANEWER", true, 1);
    let (a, b) = (f.store("a", Some(&newer)), f.store("b", Some(&old)));
    let report = f.rotate(&[&a, &b]).await;
    assert_eq!(report.outcome, Outcome::Planned);
    assert_eq!(report.synced, ["memory:b"]);
    assert_eq!((a.ops(), b.ops()), (vec![], vec![]));
    assert_eq!(b.held_id().as_deref(), Some("AKIAOLD"));
}

// ---------------------------------------------------------------------------------------
// Failures during the hand-off

#[tokio::test]
async fn a_failed_write_restores_earlier_stores_and_deletes_the_new_key() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let (a, b) = (f.store("a", Some(&old)), f.store("b", Some(&old)));
    b.fail_on(Step::Write);
    let report = f.rotate(&[&a, &b]).await;
    let err = error_of(&report);
    let new_id = report.created.clone().expect("a key was created");
    assert!(err.contains("memory:b: cannot write"), "{err}");
    assert!(err.contains(&format!("new key {new_id} deleted")), "{err}");
    assert_eq!(a.held().as_ref(), Some(&old));
    assert_eq!(
        a.ops(),
        vec![
            StoreOp::Write(new_id.clone()),
            StoreOp::Restore(Some(old.id.clone()))
        ]
    );
    assert_eq!(b.held().as_ref(), Some(&old));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD"]));
    assert_eq!(report.new_key, None);
    f.assert_safe();
}

#[tokio::test]
async fn a_failed_restore_keeps_the_new_key_a_store_hands_out() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let (a, b) = (f.store("a", Some(&old)), f.store("b", Some(&old)));
    a.fail_on(Step::Restore);
    b.fail_on(Step::Write);
    let report = f.rotate(&[&a, &b]).await;
    let err = error_of(&report);
    let new_id = report.created.clone().expect("a key was created");
    assert!(err.contains(&format!("new key {new_id} was kept")), "{err}");
    assert!(err.contains("memory:a: cannot restore"), "{err}");
    // Store a still hands out the new key, so deleting it would break a's consumers.
    assert_eq!(a.held_id(), Some(new_id.clone()));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", &new_id]));
    assert_eq!(f.iam.calls(IamOp::Delete), 0);
    f.assert_safe();
}

#[tokio::test]
async fn a_key_that_never_verifies_is_rolled_back() {
    let f = Fixture::new().short_verify_timeout();
    f.verifier.reject_always();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    let err = error_of(&report);
    let new_id = report.created.clone().expect("a key was created");
    assert!(
        err.contains(&format!("key {new_id} did not pass verification")),
        "{err}"
    );
    // Retried while the deadline allowed, as for a key IAM has not propagated yet.
    assert!(f.verifier.attempts() > 1);
    // Written, never promoted, then put back.
    assert_eq!(
        store.ops(),
        vec![
            StoreOp::Write(new_id),
            StoreOp::Restore(Some(old.id.clone()))
        ]
    );
    assert_eq!(store.held().as_ref(), Some(&old));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD"]));
    f.assert_safe();
}

#[tokio::test]
async fn a_key_deleted_during_verification_is_not_waited_for() {
    let f = Fixture::new();
    f.verifier.deletes_the_key.store(true, Ordering::SeqCst);
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    let err = error_of(&report);
    assert!(
        err.contains("is not (or no longer) an access key of IAM user app"),
        "{err}"
    );
    // One look at IAM instead of retrying until --verify-timeout.
    assert_eq!(f.verifier.attempts(), 1);
    assert_eq!(store.held().as_ref(), Some(&old));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD"]));
    f.assert_safe();
}

#[tokio::test]
async fn verification_waits_for_iam_propagation() {
    let f = Fixture::new();
    f.verifier.reject_first(2);
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    f.assert_rotated(&report, &[&store]).await;
    // Two rejections, the accepted attempt and assert_rotated's own check.
    assert_eq!(f.verifier.attempts(), 4);
}

#[tokio::test]
async fn a_failed_promote_is_rolled_back() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let (a, b) = (f.store("a", Some(&old)), f.store("b", Some(&old)));
    b.fail_on(Step::Promote);
    let report = f.rotate(&[&a, &b]).await;
    let err = error_of(&report);
    assert!(err.contains("memory:b: cannot promote"), "{err}");
    assert_eq!(
        (a.held().as_ref(), b.held().as_ref()),
        (Some(&old), Some(&old))
    );
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD"]));
    f.assert_safe();
}

#[tokio::test]
async fn a_new_key_left_by_a_failed_delete_is_cleaned_up_by_the_next_run() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    store.fail_on(Step::Write);
    f.iam.fail_on(IamOp::Delete, NEW_PREFIX);
    let report = f.rotate(&[&store]).await;
    let err = error_of(&report);
    let stray = report.created.clone().expect("a key was created");
    assert!(
        err.contains(&format!("new key {stray} could not be deleted")),
        "{err}"
    );
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", &stray]));
    assert_eq!(store.held().as_ref(), Some(&old));

    store.heal();
    f.iam.heal();
    let report = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(report.deleted, Some(stray));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", &new.id]));
}

// ---------------------------------------------------------------------------------------
// Another run at work on the same user

/// Asserts a `busy` report that changed nothing in IAM or the stores.
fn assert_busy_unchanged(
    f: &Fixture,
    report: &UserReport,
    keys: &[&str],
    stores: &[&Arc<MemoryStore>],
) {
    assert_eq!(report.outcome, Outcome::Busy, "error: {:?}", report.error);
    assert!(report.note.is_some(), "a busy report says why");
    assert_eq!(f.iam.key_ids(USER), ids(keys));
    assert_eq!(f.iam.calls(IamOp::Delete), 0);
    for store in stores {
        assert!(
            !store.ops().iter().any(|op| matches!(op, StoreOp::Write(_))),
            "{} was written",
            store.name
        );
    }
    f.assert_safe();
}

#[tokio::test]
async fn a_young_key_no_store_holds_yet_is_another_runs_and_left_alone() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    f.seed_recent("AKIAINFLIGHT", 5);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    assert!(
        report
            .note
            .as_deref()
            .unwrap_or("")
            .contains("AKIAINFLIGHT"),
        "{:?}",
        report.note
    );
    assert_busy_unchanged(&f, &report, &["AKIAOLD", "AKIAINFLIGHT"], &[&store]);
    assert_eq!(f.iam.calls(IamOp::Create), 0);
}

#[tokio::test]
async fn a_key_only_some_stores_hold_is_another_runs_hand_off_in_progress() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let young = f.seed_recent("AKIAINFLIGHT", 5);
    let (a, b) = (f.store("a", Some(&young)), f.store("b", Some(&old)));
    let report = f.rotate(&[&a, &b]).await;
    assert_busy_unchanged(&f, &report, &["AKIAOLD", "AKIAINFLIGHT"], &[&a, &b]);
}

#[tokio::test]
async fn a_young_key_every_store_holds_is_done_and_not_in_flight() {
    let f = Fixture::new();
    f.seed("AKIALAST", true, 30);
    let young = f.seed_recent("AKIANEW", 5);
    let store = f.store("a", Some(&young));
    // Fresh by policy (rotate_after is unset, so every run is due): the lock does not stop it.
    let report = f.rotate(&[&store]).await;
    f.assert_rotated(&report, &[&store]).await;
    assert_eq!(report.deleted.as_deref(), Some("AKIALAST"));
}

#[tokio::test]
async fn iams_two_key_limit_makes_the_slower_of_two_runs_busy() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    f.iam.lock().racing_key = Some("AKIAOTHERRUN".to_string());
    let report = f.rotate(&[&store]).await;
    assert_eq!(f.iam.calls(IamOp::Create), 1);
    assert_busy_unchanged(&f, &report, &["AKIAOLD", "AKIAOTHERRUN"], &[&store]);
    assert_eq!(report.error, None);
}

// ---------------------------------------------------------------------------------------
// States left by earlier runs

/// A key a run created and died before storing is deleted, and the user rotated, once it
/// cannot be a run in progress: older than the lock TTL, or with the lock off.
#[tokio::test]
async fn an_orphan_of_an_interrupted_run_is_deleted_and_the_stored_key_kept() {
    // (lock TTL in seconds, orphan created this many seconds ago; None: in the fake's past)
    for (ttl, orphan_age) in [(Some(60), None), (Some(2), Some(3)), (None, Some(1))] {
        let f = Fixture::new().lock_ttl(ttl.map(Duration::from_secs));
        let old = f.seed("AKIAOLD", true, 30);
        match orphan_age {
            Some(secs) => drop(f.seed_recent("AKIAORPHAN", secs)),
            None => drop(f.seed("AKIAORPHAN", true, 0)),
        }
        let store = f.store("a", Some(&old));
        let report = f.rotate(&[&store]).await;
        let new = f.assert_rotated(&report, &[&store]).await;
        assert_eq!(report.deleted.as_deref(), Some("AKIAORPHAN"), "{ttl:?}");
        assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", &new.id]));
    }
}

#[tokio::test]
async fn a_lagging_store_is_brought_up_to_date_and_the_key_it_held_survives_the_run() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let newer = f.seed("AKIANEWER", true, 1);
    let (a, b) = (f.store("a", Some(&newer)), f.store("b", Some(&old)));
    let report = f.rotate(&[&a, &b]).await;
    assert_eq!(report.outcome, Outcome::Synced, "{:?}", report.error);
    assert_eq!(report.synced, ["memory:b"]);
    assert_eq!(
        &b.ops()[..2],
        [
            StoreOp::Write(newer.id.clone()),
            StoreOp::Promote(newer.id.clone())
        ]
    );
    // b handed OLD out when the run started: consumers may still hold it, so this run
    // deletes nothing and creates nothing.
    assert_eq!(report.deleted, None);
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", "AKIANEWER"]));
    assert!(report.note.as_deref().unwrap().contains("AKIAOLD"));

    // The next run, with every store agreeing, rotates as usual.
    let report = f.rotate(&[&a, &b]).await;
    let new = f.assert_rotated(&report, &[&a, &b]).await;
    assert_eq!(report.deleted.as_deref(), Some("AKIAOLD"));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIANEWER", &new.id]));
}

// Through the engine, stores holding both keys never reach `PlanError::BothKeysInUse`: the
// lagging-store sync hands the plan only the newest held key. The risk is in that sync, so
// the case to pin is a newest key that cannot be proven to work.
#[tokio::test]
async fn stores_holding_both_keys_change_nothing_when_the_newer_key_fails() {
    let f = Fixture::new().short_verify_timeout();
    f.verifier.reject_always();
    let old = f.seed("AKIAOLD", true, 30);
    let newer = f.seed("AKIANEWER", true, 1);
    let (a, b) = (f.store("a", Some(&newer)), f.store("b", Some(&old)));
    let report = f.rotate(&[&a, &b]).await;
    let err = error_of(&report);
    assert!(
        err.contains("key AKIANEWER did not pass verification"),
        "{err}"
    );
    // Each key is handed out by a store, and syncing to the newer was not proven safe.
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD", "AKIANEWER"]));
    assert_eq!(
        (f.iam.calls(IamOp::Create), f.iam.calls(IamOp::Delete)),
        (0, 0)
    );
    assert_eq!((a.ops(), b.ops()), (vec![], vec![]));
    // The report must not claim a deletion or a sync that did not happen.
    assert_eq!(report.deleted, None);
    assert_eq!(report.synced, Vec::<String>::new());
    f.assert_safe();
}

#[tokio::test]
async fn more_keys_than_iam_allows_fail_the_plan_without_changes() {
    let f = Fixture::new();
    let current = f.seed("AKIA1", true, 30);
    f.seed("AKIA2", true, 20);
    f.seed("AKIA3", true, 10);
    let store = f.store("a", Some(&current));
    let report = f.rotate(&[&store]).await;
    let err = error_of(&report);
    assert!(err.contains("3 access keys"), "{err}");
    assert_eq!(
        (f.iam.calls(IamOp::Create), f.iam.calls(IamOp::Delete)),
        (0, 0)
    );
    assert_eq!(store.ops(), vec![]);
}

// ---------------------------------------------------------------------------------------
// Many users, reports, helpers

#[tokio::test]
async fn many_users_rotate_concurrently_and_one_failure_stays_contained() {
    const FAILING: &str = "user-13";
    let f = Fixture::new();
    let users: Vec<String> = (0..50).map(|i| format!("user-{i:02}")).collect();
    let stores: Vec<Arc<MemoryStore>> = users
        .iter()
        .map(|user| {
            let old = f.iam.seed(user, &format!("AKIAOLD{user}"), true, 30);
            f.store(user, Some(&old))
        })
        .collect();
    stores[13].fail_on(Step::Write);
    // Reversed, so that sorted output is the engine's doing.
    let targets = users
        .iter()
        .zip(&stores)
        .rev()
        .map(|(u, s)| target(u, &[s]))
        .collect();
    let seen = AtomicUsize::new(0);
    let on_done = |_: &UserReport| {
        seen.fetch_add(1, Ordering::SeqCst);
    };
    let reports = f.engine().rotate_many(targets, 8, &on_done).await;

    assert_eq!(seen.load(Ordering::SeqCst), 50);
    assert_eq!(
        reports.iter().map(|r| r.user.clone()).collect::<Vec<_>>(),
        users
    );
    for (report, store) in reports.iter().zip(&stores) {
        if report.user == FAILING {
            assert!(error_of(report).contains("memory:user-13: cannot write"));
            assert_eq!(f.iam.key_ids(FAILING), ids(&["AKIAOLDuser-13"]));
            assert_eq!(store.held_id().as_deref(), Some("AKIAOLDuser-13"));
        } else {
            f.assert_rotated(report, &[store]).await;
        }
    }
    f.assert_safe();
}

#[tokio::test]
async fn reports_never_reveal_a_secret() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let rotated = f.rotate(&[&store]).await;
    let new = f.assert_rotated(&rotated, &[&store]).await;

    // A failed run whose new key stays in a store: its secret is around, and must stay hidden.
    store.fail_on(Step::Restore);
    let other = f.store("b", Some(&new));
    other.fail_on(Step::Write);
    let failed = f.rotate(&[&store, &other]).await;
    error_of(&failed);
    let kept = store.held().expect("store a kept the failed run's key");
    assert_ne!(kept.id, new.id);

    for (report, key) in [(&rotated, &new), (&failed, &kept)] {
        let json = serde_json::to_string(report).unwrap();
        assert!(json.contains(&key.id), "the id is reported: {json}");
        for text in [
            json,
            format!("{report:?}"),
            report.error.clone().unwrap_or_default(),
        ] {
            assert!(!text.contains(key.expose()), "secret leaked: {text}");
            assert!(!text.contains(old.expose()), "secret leaked: {text}");
        }
    }
}

#[test]
fn arn_user_name_takes_the_last_path_segment() {
    assert_eq!(
        user_name_from_arn("arn:aws:iam::123456789012:user/app"),
        Some("app")
    );
    assert_eq!(
        user_name_from_arn("arn:aws:iam::123456789012:user/team/svc/app"),
        Some("app")
    );
    assert_eq!(
        user_name_from_arn("arn:aws:sts::123456789012:assumed-role/role/app"),
        None
    );
    assert_eq!(user_name_from_arn("not-an-arn"), None);
}

// ---------------------------------------------------------------------------------------
// The after_rotate hook point

/// Records which users' hooks ran and which key each store held at that moment.
#[derive(Default)]
struct RecordingHooks {
    seen: std::sync::Mutex<Vec<(String, Option<String>)>>,
    store: std::sync::Mutex<Option<Arc<MemoryStore>>>,
}

#[async_trait::async_trait]
impl crate::rotation::AfterRotate for RecordingHooks {
    async fn after_rotate(&self, report: &UserReport) -> Vec<crate::rotation::HookReport> {
        let held = self
            .store
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.held_id());
        self.seen.lock().unwrap().push((report.user.clone(), held));
        vec![crate::rotation::HookReport {
            hook: "test".into(),
            outcome: "failed",
            error: Some("reload refused".into()),
        }]
    }
}

#[tokio::test]
async fn hooks_run_once_the_new_key_is_promoted_and_their_failure_keeps_the_rotation() {
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let hooks = Arc::new(RecordingHooks::default());
    *hooks.store.lock().unwrap() = Some(Arc::clone(&store));
    let engine = f.engine().with_after_rotate(hooks.clone());
    let report = engine.rotate_user(&target(USER, &[&store])).await;
    let new = f.assert_rotated(&report, &[&store]).await;
    assert_eq!(
        *hooks.seen.lock().unwrap(),
        vec![(USER.to_string(), Some(new.id.clone()))]
    );
    assert_eq!(report.failed_hooks().count(), 1);
    assert!(
        f.iam.key_ids(USER).contains(&new.id),
        "a failed hook undoes nothing"
    );
}

#[tokio::test]
async fn no_hook_runs_on_a_dry_run_or_a_failed_rotation() {
    let hooks = Arc::new(RecordingHooks::default());
    let f = Fixture::new().dry_run();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f
        .engine()
        .with_after_rotate(hooks.clone())
        .rotate_user(&target(USER, &[&store]))
        .await;
    assert_eq!(report.outcome, Outcome::Planned);
    let f = Fixture::new();
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    store.fail_on(Step::Write);
    let report = f
        .engine()
        .with_after_rotate(hooks.clone())
        .rotate_user(&target(USER, &[&store]))
        .await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.hooks.is_empty());
    assert!(hooks.seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// A key maker (Terraform) instead of CreateAccessKey

/// Makes `USER`'s key in the fake IAM, as Terraform would through its provider.
struct FakeMaker {
    iam: Arc<FakeIam>,
    made: AtomicUsize,
}

#[async_trait]
impl KeyMaker for FakeMaker {
    fn describe(&self) -> String {
        "create a new key with the fake maker".to_string()
    }

    async fn make(&self, user: &str) -> Result<AccessKey, RotateError> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .iam
            .seed_created(user, "AKIAMADE", true, SystemTime::now()))
    }

    fn kept_because(&self) -> String {
        "the maker holds it".to_string()
    }
}

impl Fixture {
    fn maker(&self) -> Arc<FakeMaker> {
        Arc::new(FakeMaker {
            iam: self.iam.clone(),
            made: AtomicUsize::new(0),
        })
    }
}

#[tokio::test]
async fn a_key_maker_makes_the_key_once_last_is_retired() {
    let f = Fixture::new();
    f.seed("AKIALAST", true, 30);
    let current = f.seed("AKIACUR", true, 10);
    let store = f.store("a", Some(&current));
    let maker = f.maker();
    let engine = f.engine().with_key_maker(maker.clone());
    let report = engine.rotate_user(&target(USER, &[&store])).await;
    assert_eq!(report.outcome, Outcome::Rotated, "{:?}", report.error);
    assert_eq!(report.deleted.as_deref(), Some("AKIALAST"));
    assert_eq!(report.created.as_deref(), Some("AKIAMADE"));
    assert_eq!(store.held_id().as_deref(), Some("AKIAMADE"));
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIACUR", "AKIAMADE"]));
    assert_eq!(
        f.iam.calls(IamOp::Create),
        0,
        "IAM's CreateAccessKey is not used"
    );
    assert_eq!(maker.made.load(Ordering::SeqCst), 1);
    f.assert_safe();

    // A dry run names the maker's way.
    let f = Fixture::new().dry_run();
    let current = f.seed("AKIACUR", true, 10);
    let store = f.store("a", Some(&current));
    let maker = f.maker();
    let report = f
        .engine()
        .with_key_maker(maker.clone())
        .rotate_user(&target(USER, &[&store]))
        .await;
    assert!(
        report
            .actions
            .contains(&"would create a new key with the fake maker".to_string()),
        "{:?}",
        report.actions
    );
    assert_eq!(maker.made.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_key_makers_key_is_kept_when_its_hand_off_fails() {
    let f = Fixture::new();
    let current = f.seed("AKIACUR", true, 10);
    let (a, b) = (f.store("a", Some(&current)), f.store("b", Some(&current)));
    b.fail_on(Step::Write);
    let report = f
        .engine()
        .with_key_maker(f.maker())
        .rotate_user(&target(USER, &[&a, &b]))
        .await;
    let err = error_of(&report);
    assert!(
        err.contains("rolled back: stores restored; new key AKIAMADE kept: the maker holds it"),
        "{err}"
    );
    assert_eq!(a.held().as_ref(), Some(&current));
    assert_eq!(b.held().as_ref(), Some(&current));
    // The maker's key stays for the next run to hand on; the stores' key was never touched.
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIACUR", "AKIAMADE"]));
    assert_eq!(f.iam.calls(IamOp::Delete), 0);
}

// ---------------------------------------------------------------------------------------
// The run's time limit

#[tokio::test]
async fn a_user_whose_turn_comes_after_the_time_limit_is_not_touched() {
    let mut f = Fixture::new();
    f.options.stop_at = Some(Instant::now());
    let old = f.seed("AKIAOLD", true, 30);
    let store = f.store("a", Some(&old));
    let report = f.rotate(&[&store]).await;
    assert!(error_of(&report).starts_with("not started"), "{report:?}");
    assert_eq!(f.iam.calls(IamOp::ListKeys), 0, "no IAM call at all");
    assert_eq!(f.iam.key_ids(USER), ids(&["AKIAOLD"]));
    assert!(store.ops().is_empty());
}

#[tokio::test]
async fn a_time_limit_still_ahead_changes_nothing() {
    let mut f = Fixture::new();
    f.options.stop_at = Some(Instant::now() + Duration::from_secs(3600));
    let store = f.store("a", None);
    let report = f.rotate(&[&store]).await;
    f.assert_rotated(&report, &[&store]).await;
}
