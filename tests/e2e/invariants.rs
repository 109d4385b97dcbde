//! What must hold after any sequence of runs, killed or failed ones included, once a run
//! has converged: the invariants of the chaos and fault suites, and the helpers that read
//! what each kind of store hands out.

use crate::harness::{fake_op, key_of, keys_by_age, read_json, Key, Moto};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The fake op's service account token in these suites.
pub const OP_TOKEN: &str = "ops_fake_service_account_token";

/// One store of every kind, each naming its place after `{user}`: the same templates serve
/// a `[services.NAME]` section and a `[paths.NAME]` section.
pub const EVERY_KIND: &str = r#"{ kind = "file", path = "keys/{user}.json" },
{ kind = "ssm", prefix = "/chaos/{user}" },
{ kind = "secrets-manager", name = "chaos/{user}" },
{ kind = "1password", title = "AWS Access Key - {user}" }"#;

/// Where one store of a user is, as the tests read it (never through credrot).
#[derive(Debug, Clone)]
pub enum Store {
    /// A JSON key file.
    File(PathBuf),
    /// `{prefix}/access_key_id` and `{prefix}/secret_access_key`.
    Ssm(String),
    /// A secret's AWSCURRENT version.
    SecretsManager(String),
    /// An API Credential item in the fake op's Automation vault.
    OnePassword { state: PathBuf, title: String },
}

impl Store {
    /// The stores [`EVERY_KIND`] gives `user`, with files under `dir` and the fake op's
    /// state in `op_state`.
    pub fn every_kind(dir: &Path, op_state: &Path, user: &str) -> Vec<Store> {
        vec![
            Store::File(dir.join(format!("keys/{user}.json"))),
            Store::Ssm(format!("/chaos/{user}")),
            Store::SecretsManager(format!("chaos/{user}")),
            Store::OnePassword {
                state: op_state.to_path_buf(),
                title: format!("AWS Access Key - {user}"),
            },
        ]
    }

    /// The pair the store hands out now, None when it holds none. An SSM store whose two
    /// parameters do not form a pair is returned as it is: the checks see it fail STS.
    pub fn read(&self, moto: &Moto) -> Option<Key> {
        match self {
            Store::File(path) => path.exists().then(|| key_of(&read_json(path))),
            Store::Ssm(prefix) => moto.ssm_key(prefix).map(|(key, _)| key),
            Store::SecretsManager(name) => moto.secret_key(name, "AWSCURRENT"),
            Store::OnePassword { state, title } => onepassword_key(state, title),
        }
    }

    /// A short name for messages.
    pub fn label(&self) -> String {
        match self {
            Store::File(path) => format!("file:{}", path.file_name().unwrap().to_string_lossy()),
            Store::Ssm(prefix) => format!("ssm:{prefix}"),
            Store::SecretsManager(name) => format!("secrets-manager:{name}"),
            Store::OnePassword { title, .. } => format!("1password:{title}"),
        }
    }
}

/// The key in the fake op's item `title` (vault Automation), None when there is no item.
pub fn onepassword_key(state: &Path, title: &str) -> Option<Key> {
    let path = state.join("items.json");
    if !path.exists() {
        return None;
    }
    let items = read_json(&path);
    let item = items["items"]
        .as_array()?
        .iter()
        .find(|i| i["title"] == title && i["vault"]["name"] == "Automation")?;
    let field = |id: &str| -> Option<String> {
        item["fields"]
            .as_array()?
            .iter()
            .find(|f| f["id"] == id)?
            .get("value")?
            .as_str()
            .map(str::to_string)
    };
    Some(Key {
        id: field("username")?,
        secret: field("credential")?,
    })
}

/// Point `cmd` at the fake op in `state`, signed in as a service account.
pub fn with_fake_op<'a>(
    cmd: &'a mut std::process::Command,
    state: &Path,
) -> &'a mut std::process::Command {
    cmd.env("CREDROT_OP", fake_op())
        .env("FAKE_OP_STATE", state)
        .env("OP_SERVICE_ACCOUNT_TOKEN", OP_TOKEN)
}

/// The users under test and their stores.
pub struct Fleet {
    pub users: Vec<(String, Vec<Store>)>,
}

/// What each store of each user handed out at one moment: user -> one entry per store.
pub type Snapshot = BTreeMap<String, Vec<Option<Key>>>;

impl Fleet {
    /// What every store hands out now.
    pub fn snapshot(&self, moto: &Moto) -> Snapshot {
        self.users
            .iter()
            .map(|(user, stores)| {
                (
                    user.clone(),
                    stores.iter().map(|s| s.read(moto)).collect::<Vec<_>>(),
                )
            })
            .collect()
    }
}

/// Every key id that a store of a user (or the user's own seed) ever handed out, as far as
/// the snapshots saw: a key in IAM that is in none of them is an orphan.
#[derive(Default)]
pub struct Ledger {
    held: BTreeMap<String, BTreeSet<String>>,
}

impl Ledger {
    /// Count `key` as handed out to `user` outside credrot (a seed key someone holds).
    pub fn seed(&mut self, user: &str, key: &Key) {
        self.held
            .entry(user.to_string())
            .or_default()
            .insert(key.id.clone());
    }

    /// Add what `snapshot` shows the stores handing out.
    pub fn record(&mut self, snapshot: &Snapshot) {
        for (user, keys) in snapshot {
            let held = self.held.entry(user.clone()).or_default();
            held.extend(keys.iter().flatten().map(|k| k.id.clone()));
        }
    }

    fn held(&self, user: &str) -> Option<&BTreeSet<String>> {
        self.held.get(user)
    }
}

/// The violations of the invariants for every user of `fleet` after a run that should have
/// converged, `at_start` being what the stores handed out when that run started:
/// - at most two keys;
/// - every store holds the same pair, it is the user's newest key (CURRENT), Active, and it
///   works through STS as the user;
/// - no orphan: every other key is one that a store (or the seed) handed out before (LAST);
/// - no key that a store handed out at the start of the run was deleted by it.
pub fn violations(moto: &Moto, fleet: &Fleet, ledger: &Ledger, at_start: &Snapshot) -> Vec<String> {
    let now = fleet.snapshot(moto);
    let mut out = Vec::new();
    for (user, stores) in &fleet.users {
        let before = out.len();
        let keys = keys_by_age(moto, user);
        let ids: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        if keys.len() > 2 {
            out.push(format!("{user}: {} keys {ids:?}", keys.len()));
        }
        let held = &now[user];
        for (store, key) in stores.iter().zip(held) {
            if key.is_none() {
                out.push(format!("{user}: {} holds no key", store.label()));
            }
        }
        let mut distinct: Vec<&Key> = Vec::new();
        for key in held.iter().flatten() {
            if !distinct.contains(&key) {
                distinct.push(key);
            }
        }
        if distinct.len() > 1 {
            out.push(format!("{user}: the stores disagree"));
        }
        for key in distinct {
            match moto.whoami(key) {
                Some(arn) if arn.ends_with(&format!("/{user}")) => {}
                Some(arn) => out.push(format!("{user}: the stored key {} is {arn}", key.id)),
                None => out.push(format!(
                    "{user}: the stored pair {} is rejected by STS (torn or deleted)",
                    key.id
                )),
            }
            match keys.iter().position(|k| k.0 == key.id) {
                None => out.push(format!("{user}: the stored key {} is not in IAM", key.id)),
                Some(i) if !keys[i].1 => {
                    out.push(format!("{user}: the stored key {} is Inactive", key.id))
                }
                Some(i) if i + 1 != keys.len() => out.push(format!(
                    "{user}: the stored key {} is not the newest; newer: {:?}",
                    key.id,
                    &ids[i + 1..]
                )),
                Some(_) => {}
            }
        }
        let stored: BTreeSet<&str> = held.iter().flatten().map(|k| k.id.as_str()).collect();
        for id in &ids {
            let ever = ledger.held(user).is_some_and(|h| h.contains(*id));
            if !stored.contains(id) && !ever {
                out.push(format!("{user}: key {id} was never handed out: an orphan"));
            }
        }
        let started: BTreeSet<&str> = at_start[user]
            .iter()
            .flatten()
            .map(|k| k.id.as_str())
            .collect();
        for id in started {
            if !ids.contains(&id) {
                out.push(format!(
                    "{user}: key {id} was handed out at the start of the run and deleted by it"
                ));
            }
        }
        if out.len() > before {
            out.push(format!(
                "{user}: IAM now (oldest first, active): {:?}; the stores at the start: {}; now: {}",
                keys.iter().map(|k| (&k.0, k.1)).collect::<Vec<_>>(),
                held_ids(stores, &at_start[user]),
                held_ids(stores, held)
            ));
        }
    }
    out
}

/// `store=key id` for each store, `-` for none.
fn held_ids(stores: &[Store], held: &[Option<Key>]) -> String {
    stores
        .iter()
        .zip(held)
        .map(|(s, k)| format!("{}={}", s.label(), k.as_ref().map_or("-", |k| &k.id)))
        .collect::<Vec<_>>()
        .join(" ")
}
