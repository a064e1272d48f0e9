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
