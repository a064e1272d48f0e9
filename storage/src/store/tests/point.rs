//! Point reads of flushed rows through the `_key` page directory and the storage's metadata
//! cache: long keys whose page bounds are truncated, deleted and updated rows, misses, a
//! budget too small to keep anything, and the per-storage budget.

use super::*;

/// A key longer than Parquet's 64-byte page-statistics truncation, so neighbouring pages'
/// bounds overlap.
fn long_key(i: usize) -> String {
    format!("tenant/{}/{i:06}", "x".repeat(80))
}

fn long_keyed() -> TableDefinition {
    TableDefinition::new(
        "app.messages".parse().unwrap(),
        TableType::Shared,
        vec![
            ColumnDefinition::new("id", KalamDataType::Text).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )
    .unwrap()
}

async fn get_body(store: &Store, id: &str) -> Option<String> {
    let row = store
        .get(&t(), None, &[KalamValue::Text(id.into())])
        .await
        .unwrap()?;
    match &row[1] {
        KalamValue::Text(body) => Some(body.clone()),
        other => panic!("body of {id}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_reads_find_long_keys_on_pages_with_truncated_bounds() {
    let (_dir, store) = store().await;
    store.create_table(long_keyed(), false).await.unwrap();
    const N: usize = 5000;
    let rows = (0..N)
        .map(|i| {
            vec![
                ("id".into(), KalamValue::Text(long_key(i))),
                ("body".into(), KalamValue::Text(format!("v1 {i}"))),
            ]
        })
        .collect();
    store.insert(&t(), None, rows).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();

    // The directory has several pages and truncated bounds: some key lies within two
    // pages' bounds, so the lookup must try more than one page.
    let handle = store.handle(&t()).await.unwrap();
    let entry = handle.files_view(&KeyScope::Shared).files[0].clone();
    let index = handle
        .file_index
        .index(handle.data_file(&entry.meta))
        .await
        .unwrap();
    let pages = index
        .key_pages
        .as_ref()
        .expect("the file has `_key` page statistics");
    let key = |i: usize| crate::codec::encode_key(&[KalamValue::Text(long_key(i))], &["id"]);
    let overlapping = (0..N).any(|i| pages.holding(&key(i).unwrap()).count() > 1);
    assert!(overlapping, "no key lies within two pages' bounds");

    // Deletes and updates of flushed rows, some flushed, some still hot.
    let dead: Vec<usize> = (0..N).step_by(7).collect();
    let deletes = dead
        .iter()
        .map(|i| Mutation::Delete {
            key: vec![KalamValue::Text(long_key(*i))],
        })
        .collect();
    store.write(&t(), None, deletes).await.unwrap();
    let updates = (3..N)
        .step_by(11)
        .map(|i| Mutation::Update {
            key: vec![KalamValue::Text(long_key(i))],
            set: vec![("body".into(), KalamValue::Text(format!("v2 {i}")))],
        })
        .collect();
    store.write(&t(), None, updates).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    store
        .write(
            &t(),
            None,
            vec![Mutation::Delete {
                key: vec![KalamValue::Text(long_key(1))],
            }],
        )
        .await
        .unwrap();

    for i in (0..N).step_by(13).chain([1, 2, 1023, 1024, 1025, N - 1]) {
        let expected = if i % 7 == 0 || i == 1 {
            None
        } else if i >= 3 && (i - 3) % 11 == 0 {
            Some(format!("v2 {i}"))
        } else {
            Some(format!("v1 {i}"))
        };
        assert_eq!(get_body(&store, &long_key(i)).await, expected, "get({i})");
    }
    // Keys between, before and after the flushed ones.
    for absent in [
        format!("{}a", long_key(10)),
        "a".to_owned(),
        "tenant/".to_owned(),
        format!("{}z", long_key(N - 1)),
        "zzz".to_owned(),
    ] {
        assert_eq!(get_body(&store, &absent).await, None, "get({absent})");
    }
}

#[tokio::test]
async fn the_metadata_cache_counts_hits_and_keeps_reads_right_within_any_budget() {
    for budget in [1u64, 64 << 20] {
        let (_dir, store) = store_with(|config| config.metadata_cache_bytes = budget).await;
        store
            .create_table(messages(TableType::Shared), false)
            .await
            .unwrap();
        // Three files, the newest holding updates of the oldest's rows.
        for (round, range) in [(1, 0..300), (2, 300..600), (3, 0..100)] {
            let rows: Vec<Mutation> = range
                .map(|i| Mutation::Upsert(row(i, &format!("v{round} {i}"))))
                .collect();
            store.write(&t(), None, rows).await.unwrap();
            store.flush_table(&t(), Scope::All).await.unwrap();
        }
        let stats = || async {
            let all = store.cache_stats().await.unwrap();
            let metadata: Vec<_> = all
                .into_iter()
                .filter(|c| c.tier == crate::cache::CacheTier::Metadata)
                .collect();
            assert_eq!(
                metadata.len(),
                1,
                "one metadata cache for the local storage"
            );
            metadata[0].clone()
        };
        for pass in 0..2 {
            for i in (0..650).step_by(7) {
                let got = store
                    .get(&t(), None, &[KalamValue::BigInt(i)])
                    .await
                    .unwrap();
                let expected = match i {
                    0..100 => Some(format!("v3 {i}")),
                    100..300 => Some(format!("v1 {i}")),
                    300..600 => Some(format!("v2 {i}")),
                    _ => None,
                };
                let body = got.map(|r| match &r[1] {
                    KalamValue::Text(b) => b.clone(),
                    other => panic!("{other:?}"),
                });
                assert_eq!(body, expected, "budget {budget}, pass {pass}, get({i})");
            }
        }
        let s = stats().await;
        assert_eq!(s.spec.memory_bytes, budget);
        let used = s.used_bytes.unwrap();
        if budget == 1 {
            // Nothing fits: every lookup loads again, nothing is answered from memory.
            assert_eq!(used, 0);
            assert_eq!(s.stats.hits, 0, "{s:?}");
        } else {
            assert!(used > 0 && used <= budget, "used {used} of {budget}");
            // Footers, directories, blooms and key pages of three files load once, and each
            // row read once; the second pass is all hits.
            let asked = (0..650).step_by(7).count() as u64;
            assert!(s.stats.misses <= 3 * 4 + asked, "{s:?}");
            assert!(s.stats.hits > 100, "{s:?}");
        }
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_storage_sets_its_own_metadata_cache_budget() {
    let (_dir, store) = store().await;
    store
        .create_storage(StorageDefinition {
            id: StorageId::new("small").unwrap(),
            hot: HotEngine::Memory,
            cold_url: "memory://".into(),
            s3: S3Options::default(),
            cache: None,
            metadata_cache_bytes: Some(4 << 20),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    let defs = store.storages().await.unwrap();
    let def = defs.iter().find(|d| d.id.as_str() == "small").unwrap();
    assert_eq!(def.metadata_cache_bytes, Some(4 << 20));
    let mut table = messages(TableType::Shared);
    table.storage_id = StorageId::new("small").unwrap();
    store.create_table(table, false).await.unwrap();
    let budgets: Vec<(String, u64)> = store
        .cache_stats()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.tier == crate::cache::CacheTier::Metadata)
        .map(|c| (c.storage.to_string(), c.spec.memory_bytes))
        .collect();
    assert!(
        budgets.contains(&("small".to_owned(), 4 << 20)),
        "{budgets:?}"
    );
}

/// A 200-byte body.
fn body_of(i: i64) -> String {
    format!("{i:0>200}")
}

#[tokio::test]
async fn a_point_read_decodes_its_page_once_and_later_reads_of_the_page_hit_the_cache() {
    let (_dir, store) = store().await;
    store
        .create_table(messages(TableType::Shared), false)
        .await
        .unwrap();
    let rows = (0..3000)
        .map(|i| Mutation::Upsert(row(i, &body_of(i))))
        .collect();
    store.write(&t(), None, rows).await.unwrap();
    store.flush_table(&t(), Scope::All).await.unwrap();
    let metadata = || async {
        let all = store.cache_stats().await.unwrap();
        let m = all
            .into_iter()
            .find(|c| c.tier == crate::cache::CacheTier::Metadata)
            .unwrap();
        (m.stats, m.used_bytes.unwrap())
    };
    let store = &store;
    let body = |i: i64| async move {
        let got = store.get(&t(), None, &[KalamValue::BigInt(i)]).await;
        match got.unwrap().map(|r| r[1].clone()) {
            Some(KalamValue::Text(b)) => b,
            other => panic!("get({i}): {other:?}"),
        }
    };
    // The first read loads the footer, bloom filter, the page's keys and its rows (1024
    // bodies of 200 bytes: more than the keys and footer take).
    assert_eq!(body(1500).await, body_of(1500));
    let (first, used) = metadata().await;
    assert!(first.misses > 0, "{first:?}");
    assert!(
        used > 1024 * 200,
        "the page's rows are kept: {used} bytes used"
    );
    // Every other row of the same `_key` page (1024 rows from 1024) is a cache answer.
    for i in (1024..2048).step_by(37) {
        assert_eq!(body(i).await, body_of(i));
    }
    let (then, used_then) = metadata().await;
    assert_eq!(then.misses, first.misses, "{then:?}");
    assert!(then.hits > first.hits, "{then:?}");
    assert_eq!(used_then, used, "nothing new kept");
    // A row of another page decodes that page, once.
    assert_eq!(body(10).await, body_of(10));
    let (other, _) = metadata().await;
    assert!(other.misses > then.misses, "{other:?}");
    assert_eq!(body(11).await, body_of(11));
    assert_eq!(metadata().await.0.misses, other.misses);
    // A column added later reads NULL from the kept page (the page is kept per schema
    // version, so the new version decodes again).
    store
        .alter_table(
            &t(),
            &crate::schema::SchemaChange::AddColumn(ColumnDefinition::new(
                "mood",
                KalamDataType::Text,
            )),
        )
        .await
        .unwrap();
    let got = store
        .get(&t(), None, &[KalamValue::BigInt(1500)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last(), Some(&KalamValue::Null), "{got:?}");
    assert_eq!(got[1], KalamValue::Text(body_of(1500)));
}
