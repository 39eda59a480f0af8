//! The file's writer, group commits, yielding batches, checkpoints and reads, on real files.

use super::*;

fn options() -> DbOptions {
    DbOptions {
        fsync: false,
        secure_delete: false,
        busy_timeout: Duration::from_secs(5),
        max_readers: 2,
        checkpoint_pages: 1000,
    }
}

/// Concurrent writes share commits; one that fails (a unique value taken) rolls back
/// alone, and every other is answered only once it is committed.
#[test]
fn grouped_writes_commit_together_and_a_failing_one_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let db = Arc::new(Db::open(&path, options(), true).unwrap());
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER UNIQUE, w INTEGER)")?))
        .unwrap();
    let threads: Vec<_> = (0..32)
        .map(|i: i64| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                // 7 and 8 both write v = 7: one of them must fail, alone.
                let v = if i == 8 { 7 } else { i };
                db.write_grouped(move |tx| {
                    tx.execute("INSERT INTO t VALUES (?1, ?2)", [v, i])?;
                    // Two statements: a failure after the first must undo it too.
                    tx.execute("UPDATE t SET w = w + 100 WHERE v = ?1", [v])?;
                    Ok(i)
                })
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    // Acknowledged means committed: a fresh connection sees each answered write whole.
    let check = Connection::open(&path).unwrap();
    let rows: i64 = check
        .query_row("SELECT count(*) FROM t WHERE w >= 100", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 31);
    let all: i64 = check
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(all, 31, "the failed write left nothing");
}

/// A write whose group another write leads waits for its answer, not for the writer: here
/// the test is the leader. It holds the writer while a write joins, takes that write into
/// its group, commits it, lets the writer go and answers only 100 ms later. Meanwhile the
/// write takes the writer once more at most (it took it again and again before: thousands
/// of turns a write under 32 connections, issue 24); it returns once answered.
#[test]
fn a_grouped_write_led_by_another_waits_for_its_answer_without_spinning_on_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let db = Arc::new(Db::open(&path, options(), true).unwrap());
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
        .unwrap();
    let leader = db.writer.lock();
    let follower = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            db.write_grouped(|tx| Ok(tx.execute("INSERT INTO t VALUES (1)", [])?))
        })
    };
    while db.group.lock().is_empty() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let batch: Vec<Joined> = db.group.lock().drain(..).collect();
    let (committed, answers) = run_group(&leader, batch);
    committed.unwrap();
    let before = db.writes();
    drop(leader);
    std::thread::sleep(Duration::from_millis(100));
    let turns = db.writes() - before;
    assert!(
        !follower.is_finished(),
        "answered before its answer was sent"
    );
    assert!(
        turns <= 1,
        "{turns} turns on the writer while waiting for its answer"
    );
    for answer in answers {
        answer(Ok(()));
    }
    follower.join().unwrap().unwrap();
    let rows: i64 = db
        .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(rows, 1);
}

/// A write that panics inside a group fails alone; the writer stays usable.
#[test]
fn a_panicking_grouped_write_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("p.db"), options(), true).unwrap());
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
        .unwrap();
    let panicked = db.write_grouped(|tx| -> Result<(), StorageError> {
        tx.execute("INSERT INTO t VALUES (1)", [])?;
        panic!("a bug in a write");
    });
    assert!(panicked.is_err());
    db.write_grouped(|tx| Ok(tx.execute("INSERT INTO t VALUES (2)", [])?))
        .unwrap();
    let rows: Vec<i64> = db
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .unwrap();
    assert_eq!(rows, vec![2], "the panicking write left nothing");
}

#[test]
fn background_batches_step_aside_for_a_waiting_write_and_still_apply_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("t.db"), options(), true).unwrap());
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let total = 2000;
    let batch = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        std::thread::spawn(move || {
            // One transaction's worth, if nobody else came.
            db.write_yielding(
                (0..total).collect(),
                total,
                None,
                |_| Ok(()),
                |tx, (), i| {
                    tx.execute("INSERT INTO t VALUES (?1)", [i as i64])?;
                    done.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    Ok(())
                },
            )
        })
    };
    while done.load(Ordering::SeqCst) < 10 {
        std::thread::yield_now();
    }
    // The foreground write gets in while the batch is still going.
    let seen = db
        .write(|tx| {
            tx.execute("INSERT INTO t VALUES (-1)", [])?;
            Ok(done.load(Ordering::SeqCst))
        })
        .unwrap();
    batch.join().unwrap().unwrap();
    assert!(
        seen < total,
        "the waiting write ran only after all {total} items ({seen})"
    );
    let rows: i64 = db
        .read(|tx| Ok(tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(rows, total as i64 + 1);
}

#[test]
fn a_batch_checkpoints_at_its_own_threshold_and_leaves_other_writes_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let db = Db::open(&path, options(), true).unwrap();
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v BLOB)")?))
        .unwrap();
    let blob = vec![1u8; 3000];
    // Without a checkpoint, 600 single-record transactions leave 600+ pages in the WAL.
    db.write_yielding(
        (0..600).collect(),
        1,
        Some(50),
        |_| Ok(()),
        |tx, (), _: i32| {
            tx.execute("INSERT INTO t VALUES (?1)", [&blob])?;
            Ok(())
        },
    )
    .unwrap();
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .unwrap()
        .len();
    assert!(
        wal < 200 * 4096,
        "the batch's commits checkpointed ({wal} bytes of WAL)"
    );
    // Single writes keep the file's own threshold (1000 pages): 300 of them grow the WAL.
    for _ in 0..300 {
        db.write(|tx| {
            tx.execute("INSERT INTO t VALUES (?1)", [&blob])
                .map(drop)
                .map_err(Into::into)
        })
        .unwrap();
    }
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .unwrap()
        .len();
    assert!(
        wal > 250 * 4096,
        "other writes checkpointed at 50 pages ({wal} bytes of WAL)"
    );
}

/// A commit never checkpoints on the writer: while a checkpoint runs (here: is held),
/// writes go on and the WAL grows past the threshold; the first commit after it ends
/// checkpoints, and the writer then starts the WAL over.
#[test]
fn commits_leave_the_checkpoint_to_a_connection_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let db = steady_db(dir.path());
    {
        let _running = db.checkpointing.lock();
        for _ in 0..150 {
            insert_page(&db);
        }
        let pages = db.wal_pages.load(Ordering::Acquire);
        assert!(
            pages >= 150,
            "a commit checkpointed on the writer ({pages} pages)"
        );
    }
    insert_page(&db);
    assert_eq!(db.wal_pages.load(Ordering::Acquire), 0, "no checkpoint ran");
    insert_page(&db);
    let pages = db.wal_pages.load(Ordering::Acquire);
    assert!(pages < 10, "the WAL was not started over ({pages} pages)");
    assert_eq!(rows_in(&db), 152);
}

/// A purge's checkpoint waits for a checkpoint after a commit to end (SQLite would refuse it
/// at once, and the purge's zeroed pages would stay in the WAL), then empties the WAL.
#[test]
fn a_purges_checkpoint_waits_for_a_running_one_and_empties_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let db = Arc::new(Db::open(&path, options(), true).unwrap());
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v BLOB)")?))
        .unwrap();
    db.write(|tx| {
        tx.execute("INSERT INTO t VALUES (?1)", [vec![3u8; 20_000]])
            .map(drop)
            .map_err(Into::into)
    })
    .unwrap();
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (held, release) = std::sync::mpsc::channel::<()>();
    let running = {
        let (db, ended) = (Arc::clone(&db), Arc::clone(&ended));
        std::thread::spawn(move || {
            let _running = db.checkpointing.lock();
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            ended.store(true, Ordering::SeqCst);
        })
    };
    release.recv().unwrap();
    db.checkpoint().unwrap();
    assert!(
        ended.load(Ordering::SeqCst),
        "the purge's checkpoint ran beside another"
    );
    running.join().unwrap();
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .unwrap()
        .len();
    assert_eq!(wal, 0, "the WAL was not emptied");
}

/// A cached read with a range on an indexed column is prepared once, not again on every
/// use (issue 24: SQLite marked such a statement stale each time it went back to the cache).
#[test]
fn a_cached_filtered_read_is_not_prepared_again_on_each_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("q.db"), options(), true).unwrap();
    db.write(|tx| {
        tx.execute_batch(
            "CREATE TABLE t (tenant TEXT NOT NULL, id TEXT NOT NULL, n INTEGER, \
             PRIMARY KEY (tenant, id)) WITHOUT ROWID; \
             CREATE INDEX t_n ON t (tenant, n, id);",
        )?;
        for i in 0..200 {
            tx.execute(
                "INSERT INTO t VALUES ('a', ?1, ?2)",
                rusqlite::params![format!("r{i:04}"), i % 100],
            )?;
        }
        Ok(())
    })
    .unwrap();
    let sql = "SELECT id FROM t WHERE tenant = ?1 AND n > ?2 ORDER BY id LIMIT ?3";
    let mut reprepared = Vec::new();
    for (floor, limit) in [(90i64, 21i64), (50, 5), (90, 21), (10, 100)] {
        let (rows, count) = db
            .read(|conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let rows = stmt
                    .query_map(rusqlite::params!["a", floor, limit], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((
                    rows.len(),
                    stmt.get_status(rusqlite::StatementStatus::RePrepare),
                ))
            })
            .unwrap();
        let expected = (200 - 2 * (floor + 1)).min(limit);
        assert_eq!(rows as i64, expected, "floor {floor}, limit {limit}");
        reprepared.push(count);
    }
    assert_eq!(reprepared, [0, 0, 0, 0], "the statement was prepared again");
}

/// A one-statement read, left half-stepped, ends its snapshot when it returns: the reader
/// goes back to the pool outside any transaction, so a checkpoint can still empty the WAL.
#[test]
fn a_one_statement_read_holds_no_snapshot_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let db = Db::open(&path, options(), true).unwrap();
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v INTEGER)")?))
        .unwrap();
    db.write(|tx| Ok(tx.execute_batch("INSERT INTO t VALUES (1), (2), (3)")?))
        .unwrap();
    let first = db
        .read_statement(None, |conn| {
            let mut stmt = conn.prepare_cached("SELECT v FROM t ORDER BY v")?;
            let mut rows = stmt.query([])?;
            // One row of three: the statement is not stepped to its end.
            Ok(rows.next()?.map(|row| row.get::<_, i64>(0)).transpose()?)
        })
        .unwrap();
    assert_eq!(first, Some(1));
    assert_eq!(
        db.readers.lock().len(),
        1,
        "the reader went back to the pool"
    );
    db.write(|tx| Ok(tx.execute_batch("INSERT INTO t VALUES (4)")?))
        .unwrap();
    db.checkpoint().unwrap();
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .unwrap()
        .len();
    assert_eq!(
        wal, 0,
        "a snapshot was still held, so the WAL could not be emptied"
    );
    let count = db
        .read_statement(None, |conn| {
            Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?)
        })
        .unwrap();
    assert_eq!(count, 4);
}

/// A file whose checkpoints are due every 100 pages, with a table of one-page rows.
fn steady_db(dir: &std::path::Path) -> Arc<Db> {
    let db = Db::open(
        &dir.join("s.db"),
        DbOptions {
            checkpoint_pages: 100,
            ..options()
        },
        true,
    )
    .unwrap();
    db.write(|tx| Ok(tx.execute_batch("CREATE TABLE t (v BLOB)")?))
        .unwrap();
    Arc::new(db)
}

/// One grouped write of a row a page long.
fn insert_page(db: &Db) {
    db.write_grouped(|tx| {
        tx.execute("INSERT INTO t VALUES (?1)", [vec![5u8; 3000]])
            .map(drop)
            .map_err(Into::into)
    })
    .unwrap();
}

/// 16 threads writing 150 such rows each without a pause; the rows written.
fn write_steadily(db: &Arc<Db>) -> usize {
    let (threads, each) = (16, 150);
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let db = Arc::clone(db);
            std::thread::spawn(move || {
                for _ in 0..each {
                    insert_page(&db);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    threads * each
}

fn rows_in(db: &Db) -> usize {
    let count: i64 = db
        .read(|conn| Ok(conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
        .unwrap();
    usize::try_from(count).unwrap()
}

/// Under writers that never pause, a checkpoint runs once per `checkpoint_pages` pages
/// written, not after every commit: checkpoints run beside the writer, so the WAL seldom
/// starts over, and its length alone stays past the threshold.
#[test]
fn steady_writers_checkpoint_once_per_threshold_of_pages_not_per_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = steady_db(dir.path());
    let rows = write_steadily(&db);
    let checkpoints = db.checkpoints.load(Ordering::Relaxed);
    let wal = std::fs::metadata(dir.path().join("s.db-wal"))
        .unwrap()
        .len();
    // Each row is a page of its own, and each commit adds a page or two more: some 2,400 to
    // 5,000 pages in all, so 25 to 50 checkpoints of 100 pages. Due by the WAL's length, a
    // checkpoint ran after nearly every commit (211 here) and the WAL never started over
    // (4,622 pages long at the end).
    assert!(
        checkpoints <= (rows / 25) as u64,
        "{checkpoints} checkpoints for {rows} rows"
    );
    // Started over whenever it reached twice the threshold (some 330 pages at the longest
    // here: that, plus what was written during a checkpoint); half the rows' pages, allowing
    // for a checkpoint that lost its CPU on a busy machine.
    let longest = wal / 4096;
    assert!(
        longest <= (rows / 2) as u64,
        "the WAL grew to {longest} pages"
    );
    assert_eq!(rows_in(&db), rows);
}

/// A read holding an old snapshot keeps checkpoints from writing back past it, and the WAL
/// from starting over; checkpoints still run once per threshold of pages written, not after
/// every commit (909 checkpoints here when the next was counted from what the last one
/// wrote back), and every write and the read itself complete.
#[test]
fn a_read_holding_an_old_snapshot_does_not_make_every_commit_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = steady_db(dir.path());
    for _ in 0..20 {
        insert_page(&db);
    }
    let (holding, held) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let reader = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            db.read(|conn| {
                let seen: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                holding.send(()).unwrap();
                released.recv().unwrap();
                let again: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
                Ok((seen, again))
            })
            .unwrap()
        })
    };
    held.recv().unwrap();
    let rows = write_steadily(&db);
    let checkpoints = db.checkpoints.load(Ordering::Relaxed);
    release.send(()).unwrap();
    // The read kept its snapshot throughout.
    assert_eq!(reader.join().unwrap(), (20, 20));
    assert!(
        checkpoints <= (rows / 25) as u64,
        "{checkpoints} checkpoints for {rows} rows"
    );
    assert_eq!(rows_in(&db), rows + 20);
}
