//! Checks across sections: one service per IAM user, and one owner per store location.
//! Either overlap makes one rotation destroy the key another section hands out.

use super::error::{Locator, Problem};
use super::store::Location;
use std::collections::HashMap;

/// Who claimed something, for messages.
#[derive(Debug, Clone)]
struct Claim {
    /// A service's name (users), or `service 'a'` / `[paths.X]` (locations).
    owner: String,
    /// Where it was claimed.
    offset: usize,
}

/// What the sections read so far have claimed.
pub(super) struct Claims<'a> {
    locator: &'a Locator<'a>,
    /// IAM user -> the service that rotates it.
    users: HashMap<String, Claim>,
    /// Store location -> the section whose store keeps a key there.
    locations: HashMap<Location, Claim>,
}

impl<'a> Claims<'a> {
    pub(super) fn new(locator: &'a Locator<'a>) -> Self {
        Claims {
            locator,
            users: HashMap::new(),
            locations: HashMap::new(),
        }
    }

    /// The locator of the file, for a second, separate set of claims.
    pub(super) fn locator(&self) -> &'a Locator<'a> {
        self.locator
    }

    /// Service `service` rotates `user` (written at `offset`); a second service for the
    /// same user is refused: rotating one would delete the key the other's stores hold.
    pub(super) fn user(&mut self, user: &str, service: &str, offset: usize) -> Result<(), Problem> {
        if let Some(first) = self.users.get(user) {
            let other = &first.owner;
            return Err(Problem::new(
                offset,
                format!(
                    "services '{other}' (line {}) and '{service}' both name iam_user '{user}'; rotating one would delete the key that the other's stores hand out",
                    self.locator.line(first.offset),
                ),
                format!(
                    "put all stores of IAM user '{user}' in one service: move the stores of [services.{service}] into [services.{other}] and remove [services.{service}]"
                ),
            ));
        }
        let claim = Claim {
            owner: service.to_string(),
            offset,
        };
        self.users.insert(user.to_string(), claim);
        Ok(())
    }

    /// `owner`'s store `summary` (written at `offset`) keeps its key at `location`; a
    /// location that another store already uses is refused.
    pub(super) fn location(
        &mut self,
        location: Location,
        owner: &str,
        summary: &str,
        offset: usize,
    ) -> Result<(), Problem> {
        self.check(&location, owner, summary, offset, "")?;
        self.locations.insert(
            location,
            Claim {
                owner: owner.to_string(),
                offset,
            },
        );
        Ok(())
    }

    /// Refuse `location` if a store already uses it, without claiming it; `condition`
    /// says when the two meet (e.g. for a path store and a user only maybe under it).
    pub(super) fn check(
        &self,
        location: &Location,
        owner: &str,
        summary: &str,
        offset: usize,
        condition: &str,
    ) -> Result<(), Problem> {
        let Some(first) = self.locations.get(location) else {
            return Ok(());
        };
        let line = self.locator.line(first.offset);
        Err(if first.owner == owner {
            Problem::new(
                offset,
                format!("{owner} lists the store {summary} twice (also at line {line})"),
                "remove one of the two stores",
            )
        } else {
            Problem::new(
                offset,
                format!(
                    "store {summary} of {owner} is the same location as a store of {} (line {line}){condition}; each rotation would overwrite the other's key",
                    first.owner
                ),
                "give every service and user its own location, e.g. put {service} or {user} in the path, name, title or prefix",
            )
        })
    }
}
