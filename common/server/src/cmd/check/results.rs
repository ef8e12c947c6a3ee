//! What the checks produce: one [`Check`] per line Barman prints, collected in [`Checks`],
//! and a server's whole list for the Nagios summary ([`ServerChecks`]).

/// One check result.
#[derive(Debug, Clone)]
pub struct Check {
    /// The check's name, as Barman prints it (`WAL archive`, `ssh output clean`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// The text in parentheses after `OK`/`FAILED`.
    pub hint: Option<String>,
    /// The byte count Nagios reports as performance data (backup and WAL sizes).
    pub perfdata: Option<u64>,
}

/// The checks of one server, in the order they ran.
#[derive(Debug, Default)]
pub struct Checks {
    /// The results so far.
    pub list: Vec<Check>,
}

impl Checks {
    /// Records a result.
    pub fn add(&mut self, name: &str, ok: bool, hint: Option<String>) {
        self.list.push(Check { name: name.to_owned(), ok, hint, perfdata: None });
    }

    /// Records a passed check without a hint.
    pub fn ok(&mut self, name: &str) {
        self.add(name, true, None);
    }

    /// Records a failed check with its hint.
    pub fn fail(&mut self, name: &str, hint: impl Into<String>) {
        self.add(name, false, Some(hint.into()));
    }

    /// Records a result carrying Nagios performance data.
    pub fn measure(&mut self, name: &str, ok: bool, hint: String, bytes: u64) {
        self.list.push(Check { name: name.to_owned(), ok, hint: Some(hint), perfdata: Some(bytes) });
    }

    /// Barman's `timeout`: the failed check that ends a server's list.
    pub fn timed_out(&mut self) {
        self.fail("check timeout", "barman check command timed out");
    }
}

/// A server's name and its check results.
#[derive(Debug)]
pub struct ServerChecks {
    /// The server.
    pub name: String,
    /// Its results.
    pub checks: Vec<Check>,
}

impl ServerChecks {
    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// Whether any check failed.
    pub fn has_issues(&self) -> bool {
        self.failed().next().is_some()
    }
}
