//! The kit against real binaries: servers start, answer, stay apart, and stop when dropped.

use bulkhead_pg_testkit::{require, require_pgbouncer};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn a_started_server_answers_sql_through_psql() {
    let Some(server) = require("a_started_server_answers_sql_through_psql") else {
        return;
    };
    assert_eq!(server.host(), "127.0.0.1");
    assert_eq!(
        server.url("app"),
        format!("postgres://postgres@127.0.0.1:{}/app", server.port())
    );
    let out = server
        .psql("postgres", "SELECT 1;")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", server.log()));
    assert_eq!(out.trim(), "1");
    // A script with several statements and a psql backslash command.
    let out = server
        .psql(
            "postgres",
            "CREATE TABLE t (n int);\n\\copy t FROM stdin\n7\n8\n\\.\nSELECT sum(n) FROM t;",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(out.trim(), "15");
}

#[test]
fn a_failing_statement_is_an_error_that_says_why() {
    let Some(server) = require("a_failing_statement_is_an_error_that_says_why") else {
        return;
    };
    let error = server
        .psql("postgres", "SELECT * FROM missing_table;")
        .expect_err("must fail");
    assert!(format!("{error:#}").contains("missing_table"), "{error:#}");
}

#[test]
fn pgbouncer_in_front_of_a_server_runs_queries_for_listed_users() {
    let name = "pgbouncer_in_front_of_a_server_runs_queries_for_listed_users";
    let Some(server) = require(name) else { return };
    server
        .psql("postgres", "CREATE ROLE app LOGIN;")
        .expect("create role");
    let Some(bouncer) = require_pgbouncer(name, &server, &["app"]) else {
        return;
    };
    assert_ne!(bouncer.port(), server.port());
    assert_eq!(
        bouncer.url("app", "postgres"),
        format!("postgres://app@127.0.0.1:{}/postgres", bouncer.port())
    );
    let out = bouncer
        .psql("postgres", "postgres", "SELECT 1;")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", bouncer.log()));
    assert_eq!(out.trim(), "1");
    let out = bouncer
        .psql("app", "postgres", "SELECT current_user;")
        .expect("as app");
    assert_eq!(out.trim(), "app");
    // Transaction pooling with a small pool, as the admin console reports it.
    let config = bouncer
        .psql("postgres", "pgbouncer", "SHOW CONFIG;")
        .expect("admin console");
    assert!(config.contains("pool_mode|transaction"), "{config}");
    assert!(config.contains("default_pool_size|4"), "{config}");
    let port = bouncer.port();
    drop(bouncer);
    assert!(
        !accepts_connections(port),
        "pgbouncer still listening after drop"
    );
}

#[test]
fn two_servers_at_once_get_different_ports() {
    let Some(first) = require("two_servers_at_once_get_different_ports") else {
        return;
    };
    let Some(second) = require("two_servers_at_once_get_different_ports") else {
        return;
    };
    assert_ne!(first.port(), second.port());
    first
        .psql("postgres", "CREATE DATABASE only_in_first;")
        .expect("create database");
    let list = "SELECT count(*) FROM pg_database WHERE datname = 'only_in_first';";
    assert_eq!(first.psql("postgres", list).expect("first").trim(), "1");
    assert_eq!(second.psql("postgres", list).expect("second").trim(), "0");
}

#[test]
fn dropping_a_server_stops_it() {
    let Some(server) = require("dropping_a_server_stops_it") else {
        return;
    };
    let port = server.port();
    assert!(accepts_connections(port));
    drop(server);
    assert!(
        !accepts_connections(port),
        "server still listening after drop"
    );
}
