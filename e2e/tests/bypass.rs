//! Enforcement bypass catalogue: one case per known way of slipping past a PromQL
//! label-enforcing proxy. Every answer is checked against the tenant's policy and oracle.

use anyhow::Result;

use crate::support::{Case, Env, case};

pub fn cases() -> Vec<Case> {
    vec![case("placeholder", placeholder)]
}

fn placeholder(_env: &Env) -> Result<()> {
    Ok(())
}
