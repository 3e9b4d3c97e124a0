//! Rampart authorization and pre-trade risk.
//!
//! - [`authz`]: Cedar policies over principal (API key, account,
//!   sub-account, KYC tier, risk profile), action, resource (account,
//!   instrument) and context; policies generated from each key's settings
//!   plus operator `.cedar` files; default deny; evaluation errors deny.
//! - [`pretrade`]: per key / account limits checked at the edge before an
//!   order reaches the upstream (quantity, notional, price collar, open
//!   orders, order types, time in force, duplicate client order ids).

pub mod authz;
pub mod pretrade;
