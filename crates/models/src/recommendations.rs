//! Ranked lists for many queries (users, or items for similar items) in one flat layout: a
//! few million users × 50 items stay three allocations instead of millions of small vectors.

/// One ranked list per query, best first, with scores. A query the model knows nothing about
/// (a user without factors, an unknown item) has an empty list.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendations {
    queries: Vec<u32>,
    /// List `q` is `items[offsets[q]..offsets[q + 1]]`.
    offsets: Vec<usize>,
    items: Vec<u32>,
    scores: Vec<f32>,
}

impl Default for Recommendations {
    fn default() -> Self {
        Self::new()
    }
}

impl Recommendations {
    /// Lists for no query.
    pub fn new() -> Self {
        Self { queries: Vec::new(), offsets: vec![0], items: Vec::new(), scores: Vec::new() }
    }

    /// Appends the list of `query`; items must be best first.
    pub fn push(&mut self, query: u32, items: &[u32], scores: &[f32]) {
        debug_assert_eq!(items.len(), scores.len(), "one score per item");
        self.queries.push(query);
        self.items.extend_from_slice(items);
        self.scores.extend_from_slice(scores);
        self.offsets.push(self.items.len());
    }

    /// Appends all lists of `other`, in order.
    pub fn append(&mut self, other: &Recommendations) {
        let base = self.items.len();
        self.queries.extend_from_slice(&other.queries);
        self.items.extend_from_slice(&other.items);
        self.scores.extend_from_slice(&other.scores);
        self.offsets.extend(other.offsets[1..].iter().map(|&o| base + o));
    }

    /// Number of queries (lists), empty lists included.
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Total number of recommended (query, item) pairs.
    pub fn pairs(&self) -> usize {
        self.items.len()
    }

    /// The `index`-th query with its items and scores, best first.
    pub fn get(&self, index: usize) -> (u32, &[u32], &[f32]) {
        let range = self.offsets[index]..self.offsets[index + 1];
        (self.queries[index], &self.items[range.clone()], &self.scores[range])
    }

    /// The flat arrays, for writing columns or handing over without a copy: list `q` is query
    /// `queries[q]`, with `items[offsets[q]..offsets[q + 1]]` and the same range of `scores`.
    pub fn queries(&self) -> &[u32] {
        &self.queries
    }

    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    pub fn items(&self) -> &[u32] {
        &self.items
    }

    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u32, &[u32], &[f32])> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}
