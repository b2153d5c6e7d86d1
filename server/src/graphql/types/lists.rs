//! Lists of scalars resolved in one step.

use std::borrow::Cow;

use async_graphql::{
    ContextSelectionSet, OutputType, Positioned, ScalarType, ServerResult, Value,
    parser::types::Field, registry::Registry,
};

/// A list of scalars, the same GraphQL type as `Vec<T>` (`[T!]!`), turned into its value at
/// once. async-graphql resolves a `Vec` element by element, one future each joined with
/// `try_join_all`: for a live frame's hundreds of numbers, sent to each of a hundred charts ten
/// times a second, that was most of the leader's work (BENCHMARKS.md, live delivery). A scalar
/// has no fields to resolve, so nothing is lost by converting it directly.
pub struct ScalarList<T>(pub Vec<T>);

impl<T: ScalarType + OutputType> OutputType for ScalarList<T> {
    fn type_name() -> Cow<'static, str> {
        <Vec<T> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<T> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::List(
            self.0.iter().map(ScalarType::to_value).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn fast(&self) -> ScalarList<f64> {
            ScalarList(vec![1.5, -2.0, f64::NAN, 1e300])
        }
        async fn slow(&self) -> Vec<f64> {
            vec![1.5, -2.0, f64::NAN, 1e300]
        }
        async fn fast_ints(&self) -> ScalarList<i64> {
            ScalarList(vec![1_764_000_000_000, -1])
        }
        async fn slow_ints(&self) -> Vec<i64> {
            vec![1_764_000_000_000, -1]
        }
    }

    #[tokio::test]
    async fn a_scalar_list_has_the_type_and_the_value_of_a_vec() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let sdl = schema.sdl();
        assert!(sdl.contains("fast: [Float!]!"), "{sdl}");
        assert!(sdl.contains("fastInts: [Int!]!"), "{sdl}");
        let r = schema
            .execute("{ fast slow fastInts slowInts }")
            .await
            .into_result()
            .expect("no errors");
        let v = r.data.into_json().expect("json");
        assert_eq!(v["fast"], v["slow"]);
        assert_eq!(v["fastInts"], v["slowInts"]);
        assert_eq!(v["fast"][1], -2.0);
        assert_eq!(v["fastInts"][0], 1_764_000_000_000_i64);
    }
}
