//! What only the SQLite side has: its search index's own file.

use rusqlite::Connection;

use super::search;
use crate::ssr::store::conformance::{accepted, done, keep_all};
use crate::ssr::store::{Store, TaskFilter};

#[tokio::test]
async fn the_search_index_follows_the_tasks_in_its_own_file_and_is_built_anew_when_lost() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| Connection::open(dir.path().join(name)).unwrap();
    let log = || -> i64 {
        file("offload.sqlite3")
            .query_row("SELECT count(*) FROM text_changes", [], |r| r.get(0))
            .unwrap()
    };
    let indexed = |phrase: &str| -> i64 {
        file(search::FILE)
            .query_row(
                "SELECT count(*) FROM tasks_text WHERE tasks_text MATCH ?1",
                [format!("\"{phrase}\"")],
                |r| r.get(0),
            )
            .unwrap()
    };
    let search = |store: &Store, text: &str| {
        let (store, text) = (store.clone(), text.to_owned());
        async move {
            let filter = TaskFilter {
                search: Some(text),
                limit: 10,
                ..TaskFilter::default()
            };
            let (records, _) = store.tasks("a", filter).await.unwrap();
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let open = || Store::open(dir.path(), "odd", keep_all()).unwrap();
    {
        let (store, threads, _, _) = open();
        for id in 1..=3 {
            store.write(accepted("a", id)).await.unwrap();
        }
        store.write(done("a", 2)).await.unwrap();
        assert_eq!(search(&store, "line 2").await, [2], "caught up first");
        // The log goes with the next commit once the index holds it.
        store.flush().await.unwrap();
        assert_eq!(log(), 0);
        drop(store);
        threads.join();
    }
    // A line written but not indexed when the last run ended (as a kill between the commit
    // and the indexing leaves it): logged by the schema's trigger.
    file("offload.sqlite3")
        .execute("UPDATE tasks SET text = 'line 3 again' WHERE id = 3", [])
        .unwrap();
    assert_eq!(log(), 1);
    {
        let (store, threads, _, _) = open();
        // Indexed with no search to ask for it.
        let mut waited = 0;
        while indexed("line 3 again") == 0 && waited < 200 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited += 1;
        }
        assert_eq!(indexed("line 3 again"), 1, "indexed once the store is open");
        assert_eq!(indexed("line 2"), 1, "once, whatever was logged twice");
        // A task deleted by any writer leaves the index.
        assert_eq!(indexed(":1}"), 1, "task 1's input");
        file("offload.sqlite3")
            .execute("DELETE FROM tasks WHERE id = 1", [])
            .unwrap();
        assert_eq!(search(&store, "line").await, [3, 2]);
        assert_eq!(indexed(":1}"), 0, "task 1 is gone from the index");
        drop(store);
        threads.join();
    }
    // The search file lost: built anew from the tasks, whole before a search reads it.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("{}{suffix}", search::FILE)));
    }
    {
        let (store, threads, _, _) = open();
        assert_eq!(search(&store, "line").await, [3, 2]);
        assert_eq!(search(&store, "again").await, [3]);
        drop(store);
        threads.join();
    }
    // A search file that has seen changes the store's file has not (another store's): built
    // anew too, each task once.
    file(search::FILE)
        .execute("UPDATE marks SET value = 1000000 WHERE key = 'seq'", [])
        .unwrap();
    let (store, _threads, _, _) = open();
    assert_eq!(search(&store, "line").await, [3, 2]);
    assert_eq!(indexed("line 3 again"), 1);
}
