//! Word lists for names, categories, descriptions and addresses.

use super::*;

pub(super) const STORE_ADJ: &[&str] = &[
    "Happy",
    "Little",
    "Sunny",
    "Jolly",
    "Bright",
    "Tiny",
    "Magic",
    "Rainbow",
    "Cosmic",
    "Wonder",
    "Lucky",
    "Golden",
    "Merry",
    "Clever",
    "Brave",
    "Whimsical",
];
pub(super) const STORE_NOUN: &[&str] = &[
    "Bear", "Rocket", "Dragon", "Kite", "Castle", "Robot", "Puzzle", "Marble", "Teddy", "Pirate",
    "Unicorn", "Train", "Balloon", "Yo-Yo", "Dino", "Owl",
];
pub(super) const STORE_SUFFIX: &[&str] = &[
    " Toys",
    " Toy Shop",
    " Games",
    " Toys, Inc.",
    " & Co.",
    " Toy Emporium",
    " Playhouse",
    " Toys and Games, LLC",
];
pub(super) const CATEGORIES: &[&str] = &[
    "Toys",
    "Games",
    "Puzzles",
    "Outdoor Play",
    "Arts, Crafts & Hobbies",
    "Baby & Toddler",
    "Books",
    "Electronics",
    "Dolls, Plush & Figures",
    "Building Sets",
];
pub(super) const PRODUCT_ADJ: &[&str] = &[
    "Classic",
    "Deluxe",
    "Wooden",
    "Mini",
    "Giant",
    "Glow-in-the-Dark",
    "Remote-Control",
    "Musical",
    "Magnetic",
    "Rainbow",
    "Interactive",
    "Pocket",
    "Vintage",
    "Junior",
    "Super",
    "Eco",
];
pub(super) const PRODUCT_THING: &[&str] = &[
    "Train Set",
    "Building Blocks",
    "Puzzle, 500 Pieces",
    "Teddy Bear",
    "Race Car",
    "Dollhouse",
    "Kite",
    "Robot Kit",
    "Board Game",
    "Jigsaw Puzzle",
    "Café Play Kitchen",
    "Science Kit",
    "Yo-Yo",
    "Art Set",
    "Drum Kit",
    "Marble Run",
];
pub(super) const DESC_OPEN: &[&str] = &[
    "A sturdy, colourful",
    "The classic",
    "An award-winning",
    "A beginner-friendly",
    "A collectible",
    "A bestselling",
    "A hand-painted",
    "An eco-friendly",
];
pub(super) const DESC_CLOSE: &[&str] = &[
    "Batteries not included.",
    "Ships in a gift box.",
    "Parents call it \"the quiet-time hero\".",
    "Safety tested to EN 71.",
    "Great for rainy days, road trips and sleepovers.",
    "Includes a 2-year warranty.",
    "Assembly required; tools included.",
    "Limited edition.",
];
pub(super) const STREETS: &[&str] = &[
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "River",
    "Lincoln",
    "Jefferson",
    "Highland",
    "Willow",
];
pub(super) const STREET_KINDS: &[&str] =
    &["St.", "Ave.", "Blvd.", "Rd.", "Ln.", "Dr.", "Ct.", "Way"];
pub(super) const CITIES: &[&str] = &[
    "Springfield, IL",
    "Seattle, WA",
    "Portland, OR",
    "Austin, TX",
    "Denver, CO",
    "Boston, MA",
    "Madison, WI",
    "Raleigh, NC",
    "Phoenix, AZ",
    "Columbus, OH",
    "Nashville, TN",
    "Salt Lake City, UT",
    "Sacramento, CA",
    "Richmond, VA",
    "Albany, NY",
    "Tampa, FL",
];

pub(super) fn pick(rng: &mut Pcg64, list: &[&'static str]) -> &'static str {
    list[draw(rng, list.len() as u64) as usize]
}

/// `1234 Maple Ave.[, Apt 5], Springfield, IL 62704`
pub(super) fn push_address(rng: &mut Pcg64, out: &mut Vec<u8>) {
    push_u64(out, 1 + draw(rng, 9999));
    out.push(b' ');
    out.extend_from_slice(pick(rng, STREETS).as_bytes());
    out.push(b' ');
    out.extend_from_slice(pick(rng, STREET_KINDS).as_bytes());
    if draw(rng, 5) == 0 {
        out.extend_from_slice(b", Apt ");
        push_u64(out, 1 + draw(rng, 40));
    }
    out.extend_from_slice(b", ");
    out.extend_from_slice(pick(rng, CITIES).as_bytes());
    out.push(b' ');
    push_u64(out, 10_000 + draw(rng, 90_000));
}
