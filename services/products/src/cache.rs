//! Read caches labelled with the feed revision the read started at: an entry is
//! served only to a read at that same revision, a newer label retires every
//! entry, and each cache is bounded in bytes whatever the clients ask.

use std::{
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use quick_cache::{Equivalent, Weighter, sync::Cache};

use crate::{ProductRecord, Store, StoreError, Terms, view::FeedView};

/// Bytes of cached `GetProduct` answers.
const PRODUCTS_BYTES: u64 = 8 << 20;
/// Bytes of cached `ListProducts` pages.
const PAGES_BYTES: u64 = 8 << 20;
/// What an entry costs besides its strings (key, label, map slot), roughly.
const ENTRY_OVERHEAD: usize = 128;

/// A bounded map whose entries carry the revision they were read at.
pub(crate) struct RevisionCache<K, V> {
    /// The newest label stored: an entry labelled older is not stored (it
    /// could be stale), and a newer one retires every entry.
    newest: AtomicI64,
    entries: Cache<K, Labelled<V>, ByBytes>,
}

impl<K: Eq + Hash, V: Clone> std::fmt::Debug for RevisionCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionCache")
            .field("newest", &self.newest.load(Ordering::Relaxed))
            .field("entries", &self.entries.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Labelled<V> {
    revision: i64,
    bytes: u64,
    value: V,
}

/// Weighs an entry by the bytes it was stored with.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl<K, V> Weighter<K, Labelled<V>> for ByBytes {
    fn weight(&self, _key: &K, entry: &Labelled<V>) -> u64 {
        entry.bytes
    }
}

impl<K: Eq + Hash, V: Clone> RevisionCache<K, V> {
    /// A cache holding at most about `max_bytes` (as [`RevisionCache::insert`]
    /// counts them), evicting with S3-FIFO past it.
    pub(crate) fn new(max_bytes: u64) -> Self {
        let estimated_entries = usize::try_from(max_bytes / 1024).unwrap_or(usize::MAX);
        Self {
            newest: AtomicI64::new(i64::MIN),
            entries: Cache::with_weighter(estimated_entries, max_bytes, ByBytes),
        }
    }

    /// The value stored for `key` by a read at `revision`.
    pub(crate) fn get<Q>(&self, key: &Q, revision: i64) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let entry = self.entries.get(key)?;
        (entry.revision == revision).then_some(entry.value)
    }

    /// Stores `value` (about `bytes`), read from the database after the view
    /// stood at `revision`: it may be newer than that (harmless: retired when
    /// the view gets there), never older. Dropped if a newer revision was
    /// stored meanwhile.
    pub(crate) fn insert(&self, key: K, revision: i64, value: V, bytes: usize) {
        let newest = self.newest.fetch_max(revision, Ordering::AcqRel);
        if revision < newest {
            return;
        }
        if revision > newest {
            self.entries.clear();
        }
        let bytes = u64::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u64::MAX);
        self.entries.insert(
            key,
            Labelled {
                revision,
                bytes,
                value,
            },
        );
    }
}

/// A `GetProduct` read: the product and the subject's terms (`None`: not
/// entitled), or no such product.
pub(crate) type Found = Arc<Option<(ProductRecord, Option<Terms>)>>;
/// A `ListProducts` read: up to the fetch limit of products.
pub(crate) type Page = Arc<Vec<ProductRecord>>;
/// A page's inputs: whose products (`None`: all), after which id, how many.
type PageKey = (Option<String>, String, i64);

/// A [`PageKey`] looked up without copying its strings.
#[derive(Hash)]
struct PageLookup<'a>(Option<&'a str>, &'a str, i64);

impl Equivalent<PageKey> for PageLookup<'_> {
    fn equivalent(&self, key: &PageKey) -> bool {
        self.0 == key.0.as_deref() && self.1 == key.1 && self.2 == key.2
    }
}

/// A product id and subject looked up without copying them.
#[derive(Hash)]
struct ProductLookup<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for ProductLookup<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// `GetProduct`'s and `ListProducts`' reads, through caches labelled with
/// this replica's feed view; straight from the database while the view is
/// not current.
#[derive(Debug)]
pub(crate) struct CachedReads {
    store: Store,
    view: Arc<FeedView>,
    products: RevisionCache<(String, String), Found>,
    pages: RevisionCache<PageKey, Page>,
}

impl CachedReads {
    /// Reads of `store` labelled by `view`.
    pub(crate) fn new(store: Store, view: Arc<FeedView>) -> Self {
        Self {
            store,
            view,
            products: RevisionCache::new(PRODUCTS_BYTES),
            pages: RevisionCache::new(PAGES_BYTES),
        }
    }

    /// The feed view the caches are labelled with.
    pub(crate) fn view(&self) -> &Arc<FeedView> {
        &self.view
    }

    /// The revision to label this request's reads with, read before any of
    /// them; `None`: the view is not current, read the database.
    pub(crate) fn revision(&self) -> Option<i64> {
        self.view.current()
    }

    /// [`Store::product_for`], cached at `revision`.
    pub(crate) async fn product_for(
        &self,
        revision: Option<i64>,
        id: &str,
        subject: &str,
    ) -> Result<Found, StoreError> {
        let Some(revision) = revision else {
            return Ok(Arc::new(self.store.product_for(id, subject).await?));
        };
        if let Some(found) = self.products.get(&ProductLookup(id, subject), revision) {
            return Ok(found);
        }
        let found = Arc::new(self.store.product_for(id, subject).await?);
        let bytes = id.len()
            + subject.len()
            + found
                .as_ref()
                .as_ref()
                .map_or(0, |(product, _)| bytes_of(product));
        let key = (id.to_owned(), subject.to_owned());
        self.products.insert(key, revision, found.clone(), bytes);
        Ok(found)
    }

    /// [`Store::list_products`], cached at `revision`.
    pub(crate) async fn list_products(
        &self,
        revision: Option<i64>,
        visible_to: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Page, StoreError> {
        let Some(revision) = revision else {
            return Ok(Arc::new(
                self.store.list_products(visible_to, after, limit).await?,
            ));
        };
        if let Some(page) = self
            .pages
            .get(&PageLookup(visible_to, after, limit), revision)
        {
            return Ok(page);
        }
        let page = Arc::new(self.store.list_products(visible_to, after, limit).await?);
        let bytes =
            visible_to.map_or(0, str::len) + after.len() + page.iter().map(bytes_of).sum::<usize>();
        let key = (visible_to.map(str::to_owned), after.to_owned(), limit);
        self.pages.insert(key, revision, page.clone(), bytes);
        Ok(page)
    }
}

/// What a cached product holds, roughly.
fn bytes_of(product: &ProductRecord) -> usize {
    product.id.len() + product.name.len() + product.description.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_serves_its_own_revision_only_and_a_newer_one_retires_it() {
        let cache = RevisionCache::<(String, String), u32>::new(1 << 20);
        let key = |id: &str, subject: &str| (id.to_owned(), subject.to_owned());
        cache.insert(key("P-100", "alice"), 4, 1, 0);
        cache.insert(key("P-101", "alice"), 4, 2, 0);
        assert_eq!(cache.get(&ProductLookup("P-100", "alice"), 4), Some(1));
        assert_eq!(cache.get(&ProductLookup("P-101", "alice"), 4), Some(2));
        assert_eq!(cache.get(&ProductLookup("P-100", "bob"), 4), None);
        assert_eq!(cache.get(&ProductLookup("P-100", "alice"), 5), None);

        cache.insert(key("P-101", "alice"), 5, 3, 0);
        assert_eq!(cache.get(&ProductLookup("P-101", "alice"), 5), Some(3));
        assert_eq!(
            cache.get(&ProductLookup("P-100", "alice"), 4),
            None,
            "retired by the newer revision"
        );
        cache.insert(key("P-100", "alice"), 4, 4, 0);
        assert_eq!(
            cache.get(&ProductLookup("P-100", "alice"), 4),
            None,
            "a read labelled older than the cache is not stored"
        );
    }

    #[test]
    fn a_page_is_found_by_its_borrowed_inputs_only() {
        let cache = RevisionCache::<PageKey, u32>::new(1 << 20);
        cache.insert((Some("alice".into()), "P-100".into(), 51), 1, 1, 0);
        cache.insert((None, "P-100".into(), 51), 1, 2, 0);
        assert_eq!(
            cache.get(&PageLookup(Some("alice"), "P-100", 51), 1),
            Some(1)
        );
        assert_eq!(cache.get(&PageLookup(None, "P-100", 51), 1), Some(2));
        assert_eq!(cache.get(&PageLookup(Some("alice"), "P-100", 11), 1), None);
        assert_eq!(cache.get(&PageLookup(Some("alice"), "", 51), 1), None);
    }

    #[test]
    fn distinct_inputs_cost_bounded_memory() {
        let cache = RevisionCache::<(String, String), u32>::new(64 * 1024);
        for n in 0..10_000 {
            cache.insert((format!("P-{n}"), "alice".into()), 1, n, 1024);
        }
        // Each entry weighs 1 KiB plus the overhead: about 56 fit.
        assert!(cache.entries.len() <= 64, "{} entries", cache.entries.len());
        assert!(cache.entries.weight() <= 64 * 1024);
    }
}
