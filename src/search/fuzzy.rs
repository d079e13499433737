//! Typo tolerance without paying twice for the word itself. A word matches its
//! exact term (scored with BM25) or another spelling within its edit distance
//! (a constant). The other spellings leave the exact term out: it is already
//! matched, and a fuzzy query that includes it walks all of its postings a second
//! time, per field, for every search. For most correctly spelt words there is no
//! other spelling in the index, and the fuzzy part costs one walk of the term
//! dictionary.

use tantivy::query::{AutomatonWeight, EnableScoring, Explanation, FuzzyTermQuery, Query, Scorer, Weight};
use tantivy::schema::Field;
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};
use tantivy_fst::Automaton;

/// Terms of `field` within `distance` edits of `word` (or starting with such a
/// term, for a prefix), except `word` itself; every match scores the boost.
#[derive(Debug, Clone)]
pub struct OtherSpellings {
    field: Field,
    word: String,
    distance: u8,
    prefix: bool,
}

impl OtherSpellings {
    pub fn new(field: Field, word: &str, distance: u8, prefix: bool) -> Self {
        Self { field, word: word.to_owned(), distance, prefix }
    }
}

impl Query for OtherSpellings {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let term = Term::from_field_text(self.field, &self.word);
        // Transpositions count as one edit.
        let fuzzy = if self.prefix {
            FuzzyTermQuery::new_prefix(term, self.distance, true)
        } else {
            FuzzyTermQuery::new(term, self.distance, true)
        };
        let automaton = NotExactly { spellings: fuzzy.automaton()?, word: self.word.as_bytes().to_vec() };
        Ok(Box::new(AutomatonWeight::new(self.field, automaton)))
    }
}

/// Accepts what `spellings` accepts, except exactly `word`.
struct NotExactly<A> {
    spellings: A,
    word: Vec<u8>,
}

impl<A: Automaton> Automaton for NotExactly<A> {
    /// The inner state, and how many bytes of `word` the input has followed so
    /// far (None once it left it).
    type State = (A::State, Option<usize>);

    fn start(&self) -> Self::State {
        (self.spellings.start(), Some(0))
    }

    fn is_match(&self, (state, followed): &Self::State) -> bool {
        self.spellings.is_match(state) && *followed != Some(self.word.len())
    }

    fn can_match(&self, (state, _): &Self::State) -> bool {
        self.spellings.can_match(state)
    }

    fn accept(&self, (state, followed): &Self::State, byte: u8) -> Self::State {
        let followed = followed.filter(|n| self.word.get(*n) == Some(&byte)).map(|n| n + 1);
        (self.spellings.accept(state, byte), followed)
    }
}

/// `inner`'s score plus a constant (scaled by the boost like the inner score),
/// so that an exact match keeps scoring above a match of another spelling alone.
#[derive(Debug)]
pub struct PlusConstant {
    inner: Box<dyn Query>,
    constant: Score,
}

impl Clone for PlusConstant {
    fn clone(&self) -> Self {
        Self { inner: self.inner.box_clone(), constant: self.constant }
    }
}

impl PlusConstant {
    pub fn new(inner: Box<dyn Query>, constant: Score) -> Self {
        Self { inner, constant }
    }
}

impl Query for PlusConstant {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(PlusConstantWeight { inner: self.inner.weight(scoring)?, constant: self.constant }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct PlusConstantWeight {
    inner: Box<dyn Weight>,
    constant: Score,
}

impl Weight for PlusConstantWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(PlusConstantScorer { inner: self.inner.scorer(reader, boost)?, constant: self.constant * boost }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let inner = self.inner.explain(reader, doc)?;
        let mut explanation = Explanation::new("plus a constant", inner.value() + self.constant);
        explanation.add_detail(inner);
        Ok(explanation)
    }
}

struct PlusConstantScorer {
    inner: Box<dyn Scorer>,
    constant: Score,
}

impl DocSet for PlusConstantScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target)
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }
}

impl Scorer for PlusConstantScorer {
    fn score(&mut self) -> Score {
        self.inner.score() + self.constant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::collector::TopDocs;
    use tantivy::schema::{STORED, Schema, TEXT, Value};
    use tantivy::{Index, TantivyDocument, doc};

    fn index(titles: &[&str]) -> (Index, Field) {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT | STORED);
        let index = Index::create_in_ram(schema.build());
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for t in titles {
            writer.add_document(doc!(title => *t)).unwrap();
        }
        writer.commit().unwrap();
        (index, title)
    }

    fn titles(index: &Index, field: Field, query: &dyn Query) -> Vec<String> {
        let searcher = index.reader().unwrap().searcher();
        searcher
            .search(query, &TopDocs::with_limit(10).order_by_score())
            .unwrap()
            .into_iter()
            .map(|(_, a)| {
                let d: TantivyDocument = searcher.doc(a).unwrap();
                d.get_first(field).and_then(|v| v.as_str()).unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn other_spellings_leave_the_word_itself_out() {
        let (index, title) = index(&["shirt", "short", "skirt", "shirts", "shirtless"]);
        let mut found = titles(&index, title, &OtherSpellings::new(title, "shirt", 1, false));
        found.sort();
        assert_eq!(found, ["shirts", "short", "skirt"]);
        let mut prefixed = titles(&index, title, &OtherSpellings::new(title, "shirt", 0, true));
        prefixed.sort();
        assert_eq!(prefixed, ["shirtless", "shirts"]);
        assert!(titles(&index, title, &OtherSpellings::new(title, "sh", 0, false)).is_empty());
    }
}
