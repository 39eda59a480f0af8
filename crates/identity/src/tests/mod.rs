mod accept;
mod config_checks;
mod jwks_refresh;
mod reject;
mod shape;
mod support;
