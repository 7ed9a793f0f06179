"""Deterministic generator of realistic, messy inbound leads for benchmarks, demos and tests.

Strings are built column-wise from small pools: numpy draws the indices, Arrow kernels (the engine behind
pandas' string methods) gather and join them, so a million rows take seconds and no Python loop runs per row.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# Mirrors leadflow.domain.contract.CANONICAL_COLUMNS up to `honeypot` (a test keeps them equal): the columns of a
# form submission. Kept here so the generator runs without importing the ORM.
CANONICAL_COLUMNS: tuple[str, ...] = (
    "email", "submitted_at", "source", "external_id", "first_name", "last_name", "phone", "job_title",
    "country", "company", "website", "utm_source", "utm_medium", "utm_campaign", "message", "email_opt_in",
    "page_views", "pricing_page_visits", "demo_requested", "content_downloads", "company_size", "industry",
    "ip_address", "form_fill_seconds", "honeypot",
)  # fmt: skip
STRING = pd.StringDtype("pyarrow")
FORMATS = ("csv", "jsonl", "parquet")

DUPLICATE_FRACTION = 0.003  # exact re-deliveries of a row (same external_id): webhooks retry, exports overlap
SPAM_FRACTION = 0.015
MARKET_SEED = 20240101  # the company pool is the same for every seed: one market, many samples of it
MARKET_SIZE = 5_000

# Canonical source -> (share of new leads, external_id prefix, spellings as typed; the first is canonical).
SOURCES: dict[str, tuple[float, str, tuple[str, ...]]] = {
    "web_form": (0.30, "wf", ("web_form", "Web Form", "webform", "web-form", "Web form", "WEB_FORM")),
    "organic_search": (0.12, "os", ("organic_search", "Organic Search", "organic", "Organic", "SEO")),
    "google_ads": (0.12, "ga", ("google_ads", "Google Ads", "google ads", "GoogleAds", "AdWords")),
    "linkedin_ads": (0.10, "li", ("linkedin_ads", "LinkedIn", "LinkedIn Ads", "linkedin ads", "Linkedin")),
    "webinar": (0.08, "wb", ("webinar", "Webinar", "WEBINAR", "Webinars")),
    "event": (0.07, "ev", ("event", "Event", "Trade Show", "tradeshow", "EVENT")),
    "email_campaign": (
        0.07,
        "em",
        ("email_campaign", "Email Campaign", "email", "Newsletter", "E-Mail Campaign"),
    ),
    "live_chat": (0.06, "lc", ("live_chat", "Live Chat", "chat", "LiveChat", "live chat")),
    "referral": (0.05, "rf", ("referral", "Referral", "Customer Referral", "referal")),
    "partner": (0.03, "pt", ("partner", "Partner", "Partner Referral", "partners", "PARTNER")),
}
SOURCE_NAMES = tuple(SOURCES)
SOURCE_SPELLINGS: dict[str, tuple[str, ...]] = {name: spec[2] for name, spec in SOURCES.items()}

# Name pools by region. `Display:ascii` gives the e-mail spelling where transliteration cannot guess it;
# `_` stands for a space inside a name.
FIRST_NAMES: dict[str, str] = {
    "en": (
        "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara Richard "
        "Susan Joseph Jessica Thomas Sarah Chris Karen Daniel Emily Matthew Ashley Olivia Liam Emma Noah "
        "Sophia Ava Mason Chloe Zoë Siobhán Seán Niamh Aoife Grace Jack Harry Amelia Ethan Isabella Logan "
        "Mia Lucas Ella"
    ),
    "de": (
        "Lukas Leon Finn Jonas Maximilian Felix Paul Jürgen Günther Stefan Thomas Andreas Sabine Anna "
        "Lena Hannah Julia Katharina Sophie Marie Jörg Björn Ursula Ute Birgit Käthe Ömer Dominik Tobias "
        "Nadine"
    ),
    "fr": (
        "Jean Pierre Louis Hugo Lucas Léa Chloé Camille Manon Inès Zoé Élodie Amélie Benoît François "
        "Hélène Gaëlle Mathéo Noémie Céline Théo Julien Margaux Anaïs"
    ),
    "es": (
        "José María Juan Carmen Antonio Ana Manuel Laura Francisco Lucía Javier Sofía Alejandro Marta "
        "Raúl Nuria Ángel Iñaki Begoña Pablo Elena Sergio"
    ),
    "it": (
        "Giuseppe Marco Luca Francesco Alessandro Giulia Chiara Francesca Sara Niccolò Federica Matteo "
        "Lorenzo Elena Giorgio Alessia"
    ),
    "nl": "Daan Sem Lucas Bram Jesse Emma Julia Sanne Fleur Anouk Thijs Lotte Ruud Joost Maarten Ingrid",
    "pl": (
        "Łukasz Piotr Krzysztof Tomasz Paweł Michał Anna Katarzyna Małgorzata Agnieszka Joanna Zofia "
        "Wojciech Jakub Grzegorz Żaneta"
    ),
    "pt": (
        "João Maria Pedro Ana Lucas Gabriel Beatriz Mariana Rafael Luísa Gonçalo Inês Thiago Larissa "
        "Conceição"
    ),
    "sv": "Erik Lars Anders Johan Karl Nils Björn Astrid Ingrid Maja Elsa Åsa Sofia Linnéa Oskar",
    "in": (
        "Aarav Vivaan Aditya Arjun Rohan Priya Ananya Diya Isha Kavya Rahul Vikram Sanjay Deepika Neha "
        "Lakshmi"
    ),
    "jp": "太郎:taro 花子:hanako 健:ken 由美:yumi 翔:sho 陽菜:hina Hiroshi Yuki Kenji Akiko Takeshi "
    "Sakura Haruto",
}
LAST_NAMES: dict[str, str] = {
    "en": (
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Wilson Anderson Taylor Thomas Moore "
        "Jackson Martin Lee Thompson White Harris Clark Lewis Walker Hall Young O'Brien O'Connor McDonald "
        "Murphy Kelly Nguyen Chen Patel Kim Robinson Wright Scott Evans Hughes Edwards Baker Carter "
        "Mitchell Turner"
    ),
    "de": (
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer "
        "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Weiß "
        "Groß Köhler von_Braun Meißner Yılmaz"
    ),
    "fr": (
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre "
        "Michel Garcia David Bertrand Roux Vincent Fournier Girard Le_Gall Bonnet Dupont Mercier"
    ),
    "es": (
        "García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz "
        "Hernández Díaz Moreno Muñoz Álvarez Romero Navarro Ibáñez"
    ),
    "it": (
        "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti De_Luca "
        "Costa Fontana"
    ),
    "nl": (
        "de_Jong Jansen de_Vries van_den_Berg van_Dijk Bakker Visser Smit Meijer de_Boer Mulder Bos "
        "van_der_Meer Dekker"
    ),
    "pl": (
        "Nowak Kowalski Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak "
        "Dąbrowski Kozłowski Mazur Jankowski"
    ),
    "pt": (
        "Silva Santos Oliveira Souza Pereira Costa Rodrigues Almeida Nascimento Lima Araújo Fernandes "
        "Carvalho Gonçalves Magalhães"
    ),
    "sv": (
        "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Gustafsson "
        "Lindström Åberg Öberg Sjögren"
    ),
    "in": (
        "Sharma Verma Gupta Singh Kumar Patel Reddy Iyer Nair Rao Mehta Joshi Chatterjee Banerjee Khan Das"
    ),
    "jp": (
        "山田:yamada 佐藤:sato 鈴木:suzuki 高橋:takahashi 田中:tanaka 渡辺:watanabe "
        "Yamamoto Nakamura Kobayashi Kato Ito Sasaki"
    ),
}


@dataclass(frozen=True)
class Country:
    """A country as leads type it, with the shapes of its companies and phone numbers."""

    code: str
    weight: float
    region: str
    spellings: tuple[str, ...]
    calling_code: str
    trunk: str
    areas: tuple[str, ...]  # "area:subscriber digits"
    tlds: tuple[str, ...]
    suffixes: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = tuple(
    Country(code, weight, region, tuple(spelled.split(";")), cc, trunk, tuple(areas.split()),
            tuple(tlds.split()), tuple(suffixes.split(";")))
    for code, weight, region, spelled, cc, trunk, areas, tlds, suffixes in (
        ("US", 0.34, "en", "US;USA;United States;United States of America;us;U.S.;usa", "1", "",
         "415:7 212:7 646:7 312:7 617:7 206:7 512:7 303:7 404:7 305:7 202:7 213:7 650:7 408:7 972:7 713:7",
         "com com com io co", "Inc.;LLC;Corp.;Co."),
        ("GB", 0.11, "en", "UK;GB;United Kingdom;gb;England;Great Britain;U.K.", "44", "0",
         "20:8 121:7 131:7 161:7 113:7 7700:6 7911:6 7400:6", "co.uk co.uk com io", "Ltd;PLC;LLP"),
        ("DE", 0.11, "de", "DE;Germany;Deutschland;germany;GER", "49", "0",
         "30:7 40:8 89:8 69:8 221:7 211:7 711:7 351:7 6221:6 151:8", "de de com io",
         "GmbH;AG;GmbH & Co. KG;UG"),
        ("FR", 0.06, "fr", "FR;France;france;FRANCE", "33", "0", "1:8 2:8 3:8 4:8 5:8 6:8 7:8 9:8",
         "fr fr com", "SAS;S.A.;SARL"),
        ("CA", 0.05, "en", "CA;Canada;canada", "1", "", "416:7 604:7 514:7 403:7 613:7 647:7", "ca com",
         "Inc.;Ltd;Corp."),
        ("NL", 0.04, "nl", "NL;Netherlands;The Netherlands;Holland;Nederland", "31", "0",
         "20:7 10:7 30:7 70:7 6:8", "nl com io", "B.V.;N.V."),
        ("IN", 0.04, "in", "IN;India;india", "91", "0", "98:8 99:8 97:8 22:8 80:8", "in co.in com",
         "Pvt. Ltd.;Ltd"),
        ("ES", 0.03, "es", "ES;Spain;España;spain", "34", "", "91:7 93:7 95:7 96:7", "es com", "S.L.;S.A."),
        ("IT", 0.03, "it", "IT;Italy;Italia", "39", "", "02:8 06:8 011:7 055:7", "it com", "S.p.A.;S.r.l."),
        ("AU", 0.03, "en", "AU;Australia;australia", "61", "0", "2:8 3:8 7:8 8:8 4:8", "com.au com",
         "Pty Ltd"),
        ("JP", 0.02, "jp", "JP;Japan;日本", "81", "0", "3:8 6:8 90:8 45:7", "co.jp jp com", "K.K.;Co., Ltd."),
        ("BR", 0.02, "pt", "BR;Brazil;Brasil", "55", "0", "11:9 21:9 31:8 41:8", "com.br com", "Ltda.;S.A."),
        ("PL", 0.02, "pl", "PL;Poland;Polska", "48", "", "22:7 12:7 61:7 71:7 601:6", "pl com",
         "Sp. z o.o.;S.A."),
        ("CH", 0.02, "de", "CH;Switzerland;Schweiz;Suisse", "41", "0", "44:7 31:7 61:7 22:7 58:7", "ch com",
         "AG;GmbH;S.A."),
        ("SE", 0.02, "sv", "SE;Sweden;Sverige", "46", "0", "8:7 31:7 40:7 70:7", "se com io", "AB"),
        ("IE", 0.015, "en", "IE;Ireland;Éire", "353", "0", "1:7 21:7 91:7", "ie com", "Ltd;DAC"),
        ("AT", 0.015, "de", "AT;Austria;Österreich", "43", "0", "1:7 316:6 512:6 662:6", "at com", "GmbH;AG"),
        ("BE", 0.015, "fr", "BE;Belgium;Belgique;België", "32", "0", "2:7 3:7 9:7 4:7", "be com",
         "SA;BV;SRL"),
        ("PT", 0.01, "pt", "PT;Portugal", "351", "", "21:7 22:7", "pt com", "Lda.;S.A."),
        ("SG", 0.01, "en", "SG;Singapore", "65", "", "6:7 8:7 9:7", "sg com.sg com", "Pte. Ltd."),
    )
)  # fmt: skip
NANP = ("US", "CA")  # North American numbers have their own conventional shapes

# Legal suffix -> how people type it (leading separator included; the first is the registered form).
LEGAL_SUFFIXES: dict[str, tuple[str, ...]] = {
    "Inc.": (" Inc.", " Inc", ", Inc.", " inc", " INC", " Incorporated"),
    "LLC": (" LLC", " L.L.C.", " llc", ", LLC"),
    "Corp.": (" Corp.", " Corp", " Corporation", " corp"),
    "Corporation": (" Corporation", " Corp.", " Corp", " corp."),
    "Co.": (" Co.", " Co", " Company"),
    "Ltd": (" Ltd", " Ltd.", " Limited", " LTD", " ltd"),
    "PLC": (" PLC", " plc", " Plc", " P.L.C."),
    "LLP": (" LLP", " llp"),
    "DAC": (" DAC",),
    "Pty Ltd": (" Pty Ltd", " Pty. Ltd.", " PTY LTD", " Pty Limited"),
    "Pte. Ltd.": (" Pte. Ltd.", " Pte Ltd", " PTE LTD"),
    "Pvt. Ltd.": (" Pvt. Ltd.", " Pvt Ltd", " Private Limited", " PVT LTD"),
    "GmbH": (" GmbH", " gmbh", " GMBH", " Gmbh", " G.m.b.H."),
    "AG": (" AG", " ag", " A.G."),
    "GmbH & Co. KG": (" GmbH & Co. KG", " GmbH & Co KG", " GmbH&Co.KG"),
    "UG": (" UG (haftungsbeschränkt)", " UG"),
    "S.A.": (" S.A.", " SA", " s.a."),
    "SA": (" SA", " S.A.", " sa"),
    "SAS": (" SAS", " S.A.S.", " sas"),
    "SARL": (" SARL", " S.A.R.L.", " Sàrl"),
    "B.V.": (" B.V.", " BV", " bv"),
    "BV": (" BV", " B.V."),
    "N.V.": (" N.V.", " NV"),
    "SRL": (" SRL", " S.R.L."),
    "S.L.": (" S.L.", " SL", " S.L.U."),
    "S.p.A.": (" S.p.A.", " SpA", " SPA"),
    "S.r.l.": (" S.r.l.", " Srl", " SRL"),
    "Sp. z o.o.": (" Sp. z o.o.", " sp. z o.o.", " Sp z oo"),
    "Lda.": (" Lda.", " Lda"),
    "Ltda.": (" Ltda.", " Ltda", " LTDA"),
    "AB": (" AB", " Aktiebolag"),
    "K.K.": (" K.K.", " KK", " Kabushiki Kaisha"),
    "Co., Ltd.": (" Co., Ltd.", " Co Ltd", " CO., LTD."),
}
SUFFIX_KEYS = tuple(LEGAL_SUFFIXES)

# Industry -> spellings as typed (first is canonical) and the words its company names use.
INDUSTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Software": (
        ("Software", "SaaS", "Computer Software", "software", "Information Technology & Services"),
        ("Software", "Labs", "Cloud", "Systems", "AI", "Data", "Digital", "Technologies", "Apps"),
    ),
    "IT Services": (
        ("IT Services", "Information Technology", "IT", "Tech"),
        ("IT", "Networks", "Solutions", "Tech", "Computing", "Security"),
    ),
    "Financial Services": (
        ("Financial Services", "Finance", "Banking", "FinTech", "Insurance"),
        ("Capital", "Finance", "Bank", "Payments", "Insurance", "Holdings", "Invest"),
    ),
    "Healthcare": (
        ("Healthcare", "Health Care", "Hospital & Health Care", "Pharmaceuticals", "Medical Devices"),
        ("Health", "Medical", "Pharma", "Care", "Bio", "Diagnostics", "Clinics"),
    ),
    "Manufacturing": (
        ("Manufacturing", "Industrial", "Automotive", "Machinery", "manufacturing"),
        ("Industries", "Manufacturing", "Steel", "Components", "Machines", "Engineering", "Motors"),
    ),
    "Retail": (
        ("Retail", "E-commerce", "eCommerce", "Consumer Goods"),
        ("Retail", "Store", "Market", "Goods", "Outfitters", "Brands", "Shop"),
    ),
    "Education": (
        ("Education", "Higher Education", "E-Learning", "EdTech"),
        ("Academy", "Learning", "Education", "University", "School", "Institute"),
    ),
    "Government": (
        ("Government", "Public Sector", "Government Administration"),
        ("Authority", "Agency", "Council"),
    ),
    "Non-profit": (
        ("Non-profit", "Nonprofit", "NGO", "Non-Profit Organization Management"),
        ("Foundation", "Trust", "Initiative", "Alliance"),
    ),
    "Professional Services": (
        ("Consulting", "Management Consulting", "Professional Services", "Legal Services", "Accounting"),
        ("Consulting", "Partners", "Advisory", "Group", "Associates", "Legal"),
    ),
    "Media": (
        ("Media", "Marketing & Advertising", "Publishing", "Entertainment"),
        ("Media", "Studios", "Publishing", "Agency", "Creative", "Films"),
    ),
    "Telecommunications": (
        ("Telecommunications", "Telecom"),
        ("Telecom", "Mobile", "Communications", "Connect"),
    ),
    "Logistics": (
        ("Logistics", "Transportation", "Logistics & Supply Chain"),
        ("Logistics", "Freight", "Shipping", "Transport", "Cargo"),
    ),
    "Energy": (
        ("Energy", "Oil & Energy", "Utilities", "Renewables"),
        ("Energy", "Power", "Solar", "Wind", "Grid"),
    ),
    "Food & Beverage": (
        ("Food & Beverage", "Food Production", "Restaurants", "Hospitality"),
        ("Foods", "Kitchen", "Brewing", "Coffee", "Bakery", "Farms"),
    ),
    "Real Estate": (
        ("Real Estate", "Construction", "Property Management"),
        ("Properties", "Estates", "Construction", "Homes", "Realty", "Builders"),
    ),
}
INDUSTRY_NAMES = tuple(INDUSTRIES)
NAME_WORDS = (
    "Apex Atlas Aurora Beacon Birch Blue Bright Cascade Cedar Cobalt Copper Crest Crimson Delta Echo "
    "Ember Evergreen Falcon Fern Fjord Granite Harbor Helix Horizon Indigo Iron Jade Juniper Keystone "
    "Kite Lakeside Lumen Maple Meridian Nimbus Nord North Nova Oak Orbit Pacific Peak Pine Pioneer Prism "
    "Quantum Quartz Radiant Redwood Ridge River Sage Silver Sky Solar Sterling Stone Summit Sun Swift "
    "Terra Tidal Titan Trident Union Unity Vanguard Vector Velvet Vertex Vista Wave Willow Zenith Zephyr "
    "Alpen Rhein Elbe Hansa Lumière Sol Sakura Andes Aqua Arctic Baltic Boreal Cinder Citadel Coral Dune "
    "Eagle Elm Flux Forge Frontier Galaxy Glacier Golden Green Highland Hudson Kestrel Lotus Lynx "
    "Magnolia Mesa Metro Mosaic Nexus Oasis Onyx Opal Osprey Pebble Polar Raven Sapphire Sierra Spruce "
    "Stellar Tundra Urban Verde Violet Wren Brückner Nordström"
).split()
# The demo CRM's known accounts (leadflow/data/accounts.csv) open the pool so generated leads can match them.
KNOWN_ACCOUNTS: tuple[tuple[str, str, str, str, int, str], ...] = (
    ("Acme", "Corporation", "acme.com", "Manufacturing", 1200, "US"),
    ("Globex", "GmbH", "globex.de", "Software", 340, "DE"),
    ("Initech", "Inc.", "initech.com", "Software", 85, "US"),
    ("Umbrella", "Ltd", "umbrella.co.uk", "Healthcare", 5000, "GB"),
    ("Stark Industries", "", "starkindustries.com", "Manufacturing", 15000, "US"),
    ("Wayne Enterprises", "", "wayne-enterprises.com", "Financial Services", 9000, "US"),
    ("Soylent", "S.A.", "soylent.fr", "Food & Beverage", 650, "FR"),
    ("Hooli", "", "hooli.com", "Software", 20000, "US"),
)

FREE_MAIL = tuple(
    "gmail.com gmail.com gmail.com gmail.com outlook.com outlook.com hotmail.com yahoo.com yahoo.com "
    "icloud.com hotmail.co.uk web.de gmx.de gmx.net t-online.de orange.fr free.fr libero.it "
    "yahoo.co.jp rediffmail.com proton.me aol.com live.com wp.pl".split()
)
DISPOSABLE_MAIL = (
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "yopmail.com",
    "trashmail.com",
    "sharklasers.com",
    "tempmail.dev",
)
JOB_TITLES = tuple(
    "CEO; Chief Executive Officer; Co-Founder & CEO; Founder; Owner; CTO; CFO; COO; CMO; CIO; Chief "
    "Revenue Officer; President; Managing Director; Geschäftsführer; Directeur Général; VP Sales; VP "
    "of Sales; Vice President, Sales; VP Marketing; VP Engineering; SVP Operations; Head of Marketing; "
    "Head of Sales; Head of IT; Head of Growth; Head of Procurement; Director of IT; IT Director; "
    "Director, Marketing; Director of Operations; Sales Director; Marketing Director; Engineering "
    "Manager; Marketing Manager; Marketing Manager; Sales Manager; Sales Manager; Product Manager; "
    "Project Manager; Operations Manager; IT Manager; Procurement Manager; Office Manager; Account "
    "Executive; Business Development Rep; SDR; Senior Engineer; Sr. Software Engineer; Software "
    "Engineer; Software Engineer; Data Scientist; Data Analyst; Business Analyst; Solutions Architect; "
    "DevOps Engineer; Consultant; Senior Consultant; Specialist; Marketing Coordinator; Assistant; "
    "Executive Assistant; Intern; Marketing Intern; Student; Student; PhD Student; Teacher; "
    "Researcher; Freelancer; Retired; n/a; -; me".split("; ")
)
NO_COMPANY = ("self-employed", "Freelance", "-", "n/a", "none", "Student", "private", "N/A", "Self")
SIZE_BANDS = (
    (1, "1-10", "Micro"),
    (11, "11-50", "Small"),
    (51, "51-200", "SMB"),
    (201, "201-500", "Mid-Market"),
    (501, "501-1000", "Mid-Market"),
    (1001, "1000+", "Enterprise"),
)

MESSAGE_OPENERS = (
    "",
    "",
    "",
    "Hi, ",
    "Hello team, ",
    "Hi there! ",
    "Good morning, ",
    "Hey, ",
    "Dear Sales Team, ",
    "Hallo, ",
    "Bonjour, ",
    "Hola, ",
)
# (text, mentions a demo) - pricing, quote and timeline wording is what intent scoring looks for.
MESSAGE_BODIES: tuple[tuple[str, bool], ...] = (
    ("Could you send me your pricing for around 50 seats?", False),
    ("What does the Enterprise plan cost per user?", False),
    ("Looking for pricing info, the website is not clear.", False),
    ("Is there a discount for non-profits?", False),
    ("Need pricing for 200 users, annual billing.", False),
    ("We'd like to book a demo for our sales team.", True),
    ("Can we schedule a demo next week?", True),
    ("Requesting a product demo - we are evaluating 3 vendors.", True),
    ("Please show us a live demo, we use Salesforce today.", True),
    ("Please send a quote for 3 licences.", False),
    ("We need a formal quote for procurement, budget is approved.", False),
    ("Can you quote 120 seats incl. onboarding?", False),
    ("We need a solution in place this quarter.", False),
    ("Looking to decide by end of month, timeline is tight.", False),
    ("Our current contract ends in March, so we need to move this quarter.", False),
    ("Need pricing and a demo; we want to go live this quarter.", True),
    ("Just browsing, interested in the whitepaper.", False),
    ("How does your product integrate with HubSpot?", False),
    ("Do you support SSO (SAML)?", False),
    ("Is the data hosted in the EU? GDPR is a must for us.", False),
    ("Interested in a partnership.", False),
    ("I'm a student writing my thesis on lead scoring.", False),
    ("Please remove me from your list.", False),
    ("Can someone call me back?", False),
    ("Our team of 12 is outgrowing spreadsheets.", False),
    ("Met you at the booth, let's continue the conversation.", False),
    (
        "Wir suchen eine Lösung für unser Vertriebsteam (ca. 40 Nutzer). Können Sie uns eine Demo zeigen?",
        True,
    ),
    ("Nous souhaitons une démo pour notre équipe marketing.", True),
    ("Queremos saber el precio para 25 usuarios.", False),
    ("We have two questions:\n1) pricing\n2) API rate limits", False),
    ('Our CTO said "let\'s try it", so here we are, ready to test.', False),
)
MESSAGE_CLOSERS = (
    "",
    "",
    "",
    " Thanks!",
    " Thanks",
    " Best regards",
    " Cheers 👍",
    " Danke!",
    " Merci.",
    " 🙏",
    "\nRegards,\nJ.",
)

# Canonical source -> (utm_source, utm_medium, utm_campaign pools, share of rows that carry UTM tags).
UTM: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], float]] = {
    "google_ads": (
        ("google", "Google", "adwords"),
        ("cpc", "CPC", "paid_search", "ppc"),
        (
            "brand_search",
            "competitor_keywords",
            "generic_lead_mgmt_emea",
            "retargeting_2025",
            "Q1_Search_US",
            "q3-search-dach",
        ),
        0.92,
    ),
    "linkedin_ads": (
        ("linkedin", "LinkedIn", "li"),
        ("paid_social", "cpc", "Paid Social"),
        ("abm_enterprise", "Lead Gen Form - Q2", "retarget_visitors", "dach_cmo_persona", "webinar_promo"),
        0.9,
    ),
    "email_campaign": (
        ("newsletter", "hubspot", "Marketo", "email"),
        ("email", "Email", "e-mail"),
        ("nov_newsletter", "product_update_2024_05", "nurture_step_3", "black-friday", "reactivation"),
        0.85,
    ),
    "webinar": (
        ("webinar", "on24", "zoom", "linkedin"),
        ("event", "webinar", "email"),
        ("webinar_ai_scoring", "webinar-2025-03-12", "Pipeline Hygiene 101"),
        0.6,
    ),
    "event": (
        ("event", "tradeshow", "SaaStr", "dmexco"),
        ("offline", "event", "booth"),
        ("saastr_2024", "dmexco24", "web_summit_2025", "booth_scans"),
        0.5,
    ),
    "organic_search": (("google", "bing", "duckduckgo", "ecosia"), ("organic",), ("seo",), 0.15),
    "referral": (
        ("g2", "capterra", "referral", "customer"),
        ("referral", "affiliate"),
        ("customer_referral", "g2_reviews", "refer-a-friend"),
        0.4,
    ),
    "partner": (
        ("partner", "partnerstack", "reseller"),
        ("partner", "referral", "affiliate"),
        ("partner_portal", "reseller_q4", "co-marketing"),
        0.5,
    ),
    "web_form": (
        ("google", "linkedin", "newsletter", "facebook", "twitter", "(direct)"),
        ("cpc", "organic", "social", "email", "referral"),
        ("brand_search", "spring_launch", "retargeting_2025", "nurture_step_3"),
        0.45,
    ),
    "live_chat": (
        ("google", "linkedin", "(direct)", "bing"),
        ("cpc", "organic", "none"),
        ("brand_search", "pricing_page_chat"),
        0.35,
    ),
}
FORM_SOURCES = ("web_form", "live_chat", "webinar", "google_ads", "linkedin_ads", "organic_search")

OPT_IN = ("true", "false", "yes", "no", "1", "0", "TRUE", "FALSE", "Yes", "No", "True")
BOOLS = ("true", "false", "yes", "no", "1", "0", "TRUE", "Yes", "No", "False")
PHONE_GARBAGE = (
    "n/a",
    "N/A",
    "-",
    "0",
    "000",
    "none",
    "call me",
    "+",
    "123",
    "tbd",
    "555-PHONE",
    "0000000000",
)
COUNT_GARBAGE = ("abc", "n/a", "-1", "7.0", "many", "1,204")

BAD_KINDS = (
    "missing_email",
    "invalid_email",
    "invalid_submitted_at",
    "future_submitted_at",
    "missing_source",
    "too_long",
)
BAD_KIND_WEIGHTS = (0.2, 0.2, 0.15, 0.15, 0.15, 0.15)
INVALID_EMAILS = (
    "john.doe",
    "a@@b.com",
    "x@y",
    "jane.doe@",
    "@example.com",
    "jane doe@example.com",
    "john.doe@example,com",
    "mailto:",
    "first.last(at)acme.com",
    "user@.com",
)
INVALID_TIMESTAMPS = (
    "yesterday",
    "31/31/2024",
    "2024-13-45T10:00:00Z",
    "N/A",
    "last tuesday",
    "00/00/0000",
    "tbd",
    "2024-02-30 10:00:00",
    "10:00",
    "Q3 2024",
)
LONG_MESSAGE = ("We are evaluating vendors and have pasted our full requirements document below. " * 250)[
    :20_000
]
SPAM_NAMES = (
    "Get Rich http://bit.ly/3xYz",
    "SEO Services https://seo-boost.example",
    "Crypto www.moon-coin.biz",
    "Free $$$ http://win.example.ru",
    "Buy followers https://fans.example",
)
SPAM_MESSAGES = (
    "Best prices on SEO!!! Visit http://seo-boost.example now",
    "I can rank your site #1 on Google",
    "Make $5000/week from home http://bit.ly/3xYz",
    "Cheap backlinks, contact me on telegram",
)
SPAM_HONEYPOT = ("http://spam.example", "1", "on", "Buy now", "yes")


def _ascii_slug(text: str) -> str:
    """The ASCII letters of a name, as people spell it in an e-mail address."""
    folded = unicodedata.normalize(
        "NFKD", text.translate(str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ı": "i"}))
    )
    return "".join(ch for ch in folded.lower() if "a" <= ch <= "z")


def _parse_names(spec: str) -> list[tuple[str, str]]:
    """(display, ascii) pairs from a pool spec string."""
    pairs = []
    for token in spec.split():
        display, _, ascii_name = token.partition(":")
        display = display.replace("_", " ")
        pairs.append((display, ascii_name or _ascii_slug(display)))
    return pairs


@dataclass(frozen=True)
class _Pool:
    """A flat string pool with per-key slices, so a key array picks values in one vectorized step."""

    values: pa.Array
    offsets: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, groups: Sequence[Sequence[str]]) -> _Pool:
        counts = np.array([len(g) for g in groups], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return cls(pa.array([v for g in groups for v in g], type=pa.string()), offsets, counts)

    def index(self, rng: np.random.Generator, keys: np.ndarray, first: float = 0.0) -> np.ndarray:
        """Flat indices of one value per key: the group's first value with probability `first`, else any."""
        pick = np.floor(rng.random(len(keys)) * self.counts[keys]).astype(np.int64)
        if first:
            pick[rng.random(len(keys)) < first] = 0
        return self.offsets[keys] + pick

    def pick(self, rng: np.random.Generator, keys: np.ndarray, first: float = 0.0) -> pa.Array:
        """One value per key, drawn from that key's group."""
        return self.values.take(self.index(rng, keys, first))


def market_firmographics(coverage: float = 0.7, seed: int = MARKET_SEED) -> pd.DataFrame:
    """Reference firmographics for a share of the generated market, as `leadflow firmographics load` takes them."""
    market = _market()
    rng = np.random.default_rng(seed + 1)
    keep = rng.random(len(market.employees)) < coverage
    suffix = np.array(["", *(LEGAL_SUFFIXES[key][0] for key in SUFFIX_KEYS)], dtype=object)[market.suffix + 1]
    names = [f"{b}{s}".strip() for b, s in zip(market.base.to_pylist(), suffix, strict=True)]
    bands = np.array(["<1M", "1M-10M", "10M-50M", "50M-250M", "250M-1B", "1B+"])
    band = bands[np.searchsorted([10, 50, 200, 1000, 5000], market.employees, side="left")]
    frame = pd.DataFrame({
        "domain": market.domain.to_pylist(),
        "legal_name": names,
        "industry": np.array(INDUSTRY_NAMES)[market.industry],
        "employee_count": market.employees,
        "revenue_band": band,
        "country": np.array([c.code for c in COUNTRIES])[market.country],
    })
    return frame.loc[keep].reset_index(drop=True)


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _cat(*parts: pa.Array | str) -> pa.Array:
    """Row-wise concatenation; a missing part makes the row missing."""
    return pc.binary_join_element_wise(*parts, "")


@functools.cache
def _numerals(width: int, base: str = "d") -> pa.Array:
    """The strings of 0..65535, zero-padded to `width`, in decimal or hex."""
    return _strings([format(i, f"0{width}{base}") for i in range(65_536)])


def _num(values: np.ndarray, width: int = 0) -> pa.Array:
    """Integers as strings, zero-padded to `width`."""
    values = np.asarray(values, dtype=np.int64)
    if len(values) and values.min() >= 0 and values.max() < 65_536:
        return _numerals(width).take(values)  # a gather beats formatting for small numbers
    text = pc.cast(pa.array(values), pa.string())
    return pc.utf8_lpad(text, width=width, padding="0") if width else text


def _draw(rng: np.random.Generator, size: int, weights: Sequence[float]) -> np.ndarray:
    """Category ids by weight."""
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _scatter(n: int, parts: Sequence[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """One column assembled from pieces built for row subsets; later pieces win, the rest is missing."""
    pos = np.full(n, -1, dtype=np.int64)
    chunks: list[pa.Array] = []
    offset = 0
    for idx, values in parts:
        pos[idx] = offset + np.arange(len(idx))
        chunks.append(values.cast(pa.string()))
        offset += len(idx)
    values = pa.concat_arrays(chunks) if chunks else pa.nulls(0, pa.string())
    return values.take(pa.array(pos, mask=pos < 0))


def _override(base: pa.Array, idx: np.ndarray, values: pa.Array) -> pa.Array:
    """`base` with the rows in `idx` replaced."""
    return _scatter(len(base), [(np.arange(len(base)), base), (idx, values)])


def _blank(rng: np.random.Generator, values: pa.Array, p: float) -> pa.Array:
    """Drop a share of values: fields people skip."""
    return pc.if_else(pa.array(rng.random(len(values)) < p), pa.scalar(None, pa.string()), values)


def _subset(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return np.flatnonzero(rng.random(n) < p)


def _recase(
    rng: np.random.Generator, values: pa.Array, lower: float = 0.0, upper: float = 0.0, title: float = 0.0
) -> pa.Array:
    """Re-type a share of values in lower, UPPER or Title case."""
    u = rng.random(len(values))
    parts = [(np.arange(len(values)), values)]
    edge = 0.0
    for share, kernel in ((lower, pc.utf8_lower), (upper, pc.utf8_upper), (title, pc.utf8_title)):
        if share:
            idx = np.flatnonzero((u >= edge) & (u < edge + share))
            parts.append((idx, kernel(values.take(idx))))
        edge += share
    return _scatter(len(values), parts)


def _pad(rng: np.random.Generator, values: pa.Array, p: float) -> pa.Array:
    """Surround a share of values with stray whitespace, as copy-paste leaves it."""
    idx = _subset(rng, len(values), p)
    left = _strings(("", " ", "  ", " ")).take(rng.integers(0, 4, len(idx)))
    right = _strings(("", " ", "  ", "\t", " ")).take(rng.integers(0, 5, len(idx)))
    return _override(values, idx, _cat(left, values.take(idx), right))


def _random_upper(rng: np.random.Generator, values: pa.Array, p: float = 0.3) -> pa.Array:
    """Upper-case random letters of ASCII strings (`jaNe.doE@Acme.com`)."""
    raw = np.array(values.to_pylist(), dtype="S")
    if not len(raw):
        return values
    codes = raw.view(np.uint8).reshape(len(raw), -1)
    flip = (codes >= 97) & (codes <= 122) & (rng.random(codes.shape) < p)
    codes = np.where(flip, codes - 32, codes).astype(np.uint8)
    return pa.array(codes.view(raw.dtype).ravel().astype(str).tolist(), type=pa.string())


@dataclass(frozen=True)
class _Market:
    """The pool of companies leads work at."""

    base: pa.Array  # name without legal suffix
    suffix: np.ndarray  # index into SUFFIX_KEYS, -1 for none
    domain: pa.Array
    country: np.ndarray  # index into COUNTRIES
    industry: np.ndarray  # index into INDUSTRY_NAMES
    employees: np.ndarray
    weight: np.ndarray  # bigger companies send more leads


@functools.cache
def _names(kind: str) -> tuple[_Pool, _Pool, dict[str, int]]:
    """Display and ASCII name pools by region."""
    spec = FIRST_NAMES if kind == "first" else LAST_NAMES
    regions = list(spec)
    parsed = [_parse_names(spec[r]) for r in regions]
    display = _Pool.of([[d for d, _ in pairs] for pairs in parsed])
    ascii_ = _Pool.of([[a for _, a in pairs] for pairs in parsed])
    return display, ascii_, {r: i for i, r in enumerate(regions)}


@functools.cache
def _market() -> _Market:
    """The company pool: the known accounts, then invented companies shaped by their country and industry."""
    rng = np.random.default_rng(MARKET_SEED)
    codes = [c.code for c in COUNTRIES]
    rows = [
        (base, SUFFIX_KEYS.index(suffix) if suffix else -1, domain, codes.index(country),
         INDUSTRY_NAMES.index(industry), size)
        for base, suffix, domain, industry, size, country in KNOWN_ACCOUNTS
    ]  # fmt: skip
    seen_names = {row[0] for row in rows}
    seen_domains = {row[2] for row in rows}
    last_names = {region: [d for d, _ in _parse_names(spec)] for region, spec in LAST_NAMES.items()}
    while len(rows) < MARKET_SIZE:
        # Draw candidates in bulk and keep the first unused name and domain of each.
        batch = 2 * (MARKET_SIZE - len(rows))
        country = _draw(rng, batch, [c.weight for c in COUNTRIES])
        industry = rng.integers(0, len(INDUSTRY_NAMES), batch)
        form, hyphen, no_suffix = rng.random(batch), rng.random(batch), rng.random(batch)
        a = rng.integers(0, len(NAME_WORDS), batch)
        pick, pick2, pick3, pick4 = (rng.integers(0, 1 << 30, batch) for _ in range(4))
        employees = np.clip(np.exp(rng.normal(4.5, 1.6, batch)), 1, 250_000).astype(np.int64)
        for i in range(batch):
            spec = COUNTRIES[country[i]]
            words = INDUSTRIES[INDUSTRY_NAMES[industry[i]]][1]
            first, second = NAME_WORDS[a[i]], words[pick[i] % len(words)]
            if form[i] < 0.6:
                base = f"{first} {second}"
            elif form[i] < 0.83:
                base = f"{first}{second.lower()}"
            elif form[i] < 0.88:
                base = first
            else:
                pool = last_names[spec.region]
                x, y = pool[pick[i] % len(pool)], pool[pick2[i] % len(pool)]
                base = f"{x} & {y}" if x != y else x
            parts = [_ascii_slug(part) for part in base.split()]
            slug = "-".join(p for p in parts if p) if hyphen[i] < 0.2 else "".join(parts)
            domain = f"{slug}.{spec.tlds[pick3[i] % len(spec.tlds)]}"
            if not slug or base in seen_names or domain in seen_domains:
                continue
            seen_names.add(base)
            seen_domains.add(domain)
            suffix = (
                -1 if no_suffix[i] < 0.12 else SUFFIX_KEYS.index(spec.suffixes[pick4[i] % len(spec.suffixes)])
            )
            rows.append((base, suffix, domain, int(country[i]), int(industry[i]), int(employees[i])))
            if len(rows) == MARKET_SIZE:
                break
    bases, suffixes, domains, countries, industries, sizes = zip(*rows, strict=True)
    size = np.array(sizes, dtype=np.int64)
    return _Market(
        base=_strings(bases),
        suffix=np.array(suffixes, dtype=np.int64),
        domain=_strings(domains),
        country=np.array(countries, dtype=np.int64),
        industry=np.array(industries, dtype=np.int64),
        employees=size,
        weight=np.sqrt(size) / np.sqrt(size).sum(),
    )


def _utc_seconds(value: str, end_of_day: bool = False) -> int:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if end_of_day and len(value.strip()) <= 10:
        stamp += pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    return int(stamp.timestamp())


def _base_times(rng: np.random.Generator, n: int, start: int, end: int) -> np.ndarray:
    """Submission times in UTC seconds: business hours, fewer on weekends."""
    first_day, last_day = start // 86_400, end // 86_400
    day = rng.integers(first_day, last_day + 1, n)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    weekend = (weekday >= 5) & (rng.random(n) < 0.6)
    day = np.where(weekend, day - (weekday - 4), day)
    office = rng.random(n) < 0.7
    tod = np.where(office, rng.normal(14.5 * 3600, 3.5 * 3600, n), rng.uniform(0, 86_400, n))
    seconds = day * 86_400 + np.mod(tod, 86_400).astype(np.int64)
    # Clipping would pile a short window onto its edges; there a plain uniform spread is the honest choice.
    outside = (seconds < start) | (seconds > end)
    return np.where(outside, rng.integers(start, end + 1, n), seconds)


def _clock(seconds: np.ndarray) -> dict[str, pa.Array]:
    """Zero-padded calendar fields of UTC seconds, for assembling timestamps in any layout."""
    stamp = seconds.astype("datetime64[s]")
    days = stamp.astype("datetime64[D]")
    months = stamp.astype("datetime64[M]")
    years = stamp.astype("datetime64[Y]")
    of_day = (stamp - days).astype(np.int64)
    return {
        "Y": _num(years.astype(np.int64) + 1970),
        "m": _num((months - years).astype(np.int64) + 1, 2),
        "d": _num((days - months).astype(np.int64) + 1, 2),
        "H": _num(of_day // 3600, 2),
        "M": _num(of_day // 60 % 60, 2),
        "S": _num(of_day % 60, 2),
    }


def _timestamps(rng: np.random.Generator, seconds: np.ndarray) -> pa.Array:
    """Submission times typed the way different tools export them."""
    n = len(seconds)
    kind = _draw(rng, n, (0.45, 0.1, 0.15, 0.1, 0.08, 0.07, 0.05))
    # Offsets shift the wall-clock time; the instant stays the same.
    offsets = np.array([-8, -5, -4, 0, 1, 2, 5.5, 9]) * 3600
    labels = _strings(("-08:00", "-05:00", "-04:00", "+00:00", "+01:00", "+02:00", "+05:30", "+09:00"))
    which = rng.integers(0, len(offsets), n)
    local = np.where(kind == 2, seconds + offsets[which].astype(np.int64), seconds)
    fields = {**_clock(local), "z": labels.take(which), "f": _num(rng.integers(0, 1000, n), 3)}
    layouts = (
        "{Y}-{m}-{d}T{H}:{M}:{S}Z",
        "{Y}-{m}-{d}T{H}:{M}:{S}.{f}Z",
        "{Y}-{m}-{d}T{H}:{M}:{S}{z}",
        "{Y}-{m}-{d} {H}:{M}:{S}",
        "{m}/{d}/{Y} {H}:{M}",
        None,  # epoch seconds
        "{Y}-{m}-{d}T{H}:{M}:{S}",
    )
    parts = []
    for k, layout in enumerate(layouts):
        idx = np.flatnonzero(kind == k)
        if layout is None:
            parts.append((idx, _num(seconds[idx])))
        else:
            parts.append((idx, _render(layout, {name: values.take(idx) for name, values in fields.items()})))
    return _scatter(n, parts)


def _phones(
    rng: np.random.Generator,
    country: np.ndarray,
    area: np.ndarray,
    subscriber: np.ndarray,
    digits: np.ndarray,
    areas: pa.Array,
) -> pa.Array:
    """Phone numbers in the many shapes people type them, consistent with the lead's country."""
    n = len(country)
    nanp = np.isin(country, [i for i, c in enumerate(COUNTRIES) if c.code in NANP])
    fmt = rng.integers(0, 1000, n)
    sub = _num(subscriber)
    area_text = areas.take(area)
    half = digits // 2
    parts: list[tuple[np.ndarray, pa.Array]] = []
    # North America: +1 (415) 555-0100 and friends.
    nanp_shapes = (
        "+1 ({a}) {e}-{l}",
        "({a}) {e}-{l}",
        "{a}-{e}-{l}",
        "{a}.{e}.{l}",
        "+1{a}{e}{l}",
        "1-{a}-{e}-{l}",
        "{a}{e}{l}",
        "+1 ({a}) {e}-{l} ext. 12",
    )
    shape = np.minimum(fmt // 125, len(nanp_shapes) - 1)
    for k, template in enumerate(nanp_shapes):
        idx = np.flatnonzero(nanp & (shape == k))
        a, s = area_text.take(idx), sub.take(idx)
        pieces = {"a": a, "e": pc.utf8_slice_codeunits(s, 0, 3), "l": pc.utf8_slice_codeunits(s, 3, 7)}
        parts.append((idx, _render(template, pieces)))
    # Everywhere else: +44 20 7946 0958, 0044 20 7946 0958, 030 1234567, +49 (0)30 ...
    cc = _strings([c.calling_code for c in COUNTRIES]).take(country)
    trunk = _strings([c.trunk for c in COUNTRIES]).take(country)
    has_trunk = np.array([bool(c.trunk) for c in COUNTRIES])[country]
    world_shapes = (
        "+{cc} {a} {s1} {s2}",
        "00{cc} {a} {s1} {s2}",
        "{t}{a} {s}",
        "+{cc} ({t}){a} {s}",
        "+{cc}{a}{s}",
        "{t}{a}/{s}",
        "{t}{a}-{s1}{s2}",
        "{t}{a} {s1} {s2}",
    )
    cut = np.cumsum([300, 150, 250, 60, 90, 50, 50, 50])
    shape = np.searchsorted(cut, fmt, side="right")
    shape = np.where((shape == 3) & ~has_trunk, 0, shape)  # "(0)" only exists where there is a trunk prefix
    for k, template in enumerate(world_shapes):
        idx = np.flatnonzero(~nanp & (shape == k))
        s = sub.take(idx)
        cutpoint = pa.array(half[idx])
        pieces = {
            "cc": cc.take(idx),
            "t": trunk.take(idx),
            "a": area_text.take(idx),
            "s": s,
            "s1": _slice_to(s, cutpoint),
            "s2": _slice_from(s, cutpoint),
        }
        parts.append((idx, _render(template, pieces)))
    phones = _scatter(n, parts)
    idx = _subset(rng, n, 0.025)
    phones = _override(
        phones, idx, _strings(PHONE_GARBAGE).take(rng.integers(0, len(PHONE_GARBAGE), len(idx)))
    )
    return _pad(rng, _blank(rng, phones, 0.3), 0.03)


def _slice_to(values: pa.Array, stops: pa.Array) -> pa.Array:
    # Arrow slices take one stop for the whole array, so split by distinct stop (only a few exist).
    return _by_stop(values, stops, lambda v, k: pc.utf8_slice_codeunits(v, 0, k))


def _slice_from(values: pa.Array, starts: pa.Array) -> pa.Array:
    return _by_stop(values, starts, lambda v, k: pc.utf8_slice_codeunits(v, k))


def _by_stop(values: pa.Array, stops: pa.Array, cut: Callable[[pa.Array, int], pa.Array]) -> pa.Array:
    stops_np = stops.to_numpy()
    parts = []
    for k in np.flatnonzero(np.bincount(stops_np)):
        idx = np.flatnonzero(stops_np == k)
        parts.append((idx, cut(values.take(idx), int(k))))
    return _scatter(len(values), parts)


def _render(template: str, pieces: dict[str, pa.Array]) -> pa.Array:
    """Fill a `{name}` template row-wise from string arrays."""
    parts: list[pa.Array | str] = []
    rest = template
    while rest:
        head, brace, tail = rest.partition("{")
        if head:
            parts.append(head)
        if not brace:
            break
        name, _, rest = tail.partition("}")
        parts.append(pieces[name])
    if len(parts) == 1 and isinstance(parts[0], pa.Array):
        return parts[0]
    return _cat(*parts)


def _company_size(rng: np.random.Generator, employees: np.ndarray) -> pa.Array:
    """Headcount as typed into a form: bands, exact numbers, words."""
    n = len(employees)
    starts = np.array([b[0] for b in SIZE_BANDS])
    band = np.searchsorted(starts, employees, side="right") - 1
    labels = _strings([b[1] for b in SIZE_BANDS]).take(band)
    kind = _draw(rng, n, (0.42, 0.08, 0.04, 0.16, 0.03, 0.07))
    parts = [(np.flatnonzero(kind == 0), labels.take(np.flatnonzero(kind == 0)))]
    idx = np.flatnonzero(kind == 1)
    parts.append((idx, pc.replace_substring(labels.take(idx), "-", " - ")))
    idx = np.flatnonzero(kind == 2)
    parts.append((idx, pc.replace_substring(labels.take(idx), "-", " to ")))
    idx = np.flatnonzero(kind == 3)
    parts.append((idx, _num(employees[idx])))
    idx = np.flatnonzero(kind == 4)
    parts.append((idx, _cat("~", _num(np.round(employees[idx], -1).clip(10)))))
    idx = np.flatnonzero(kind == 5)
    parts.append((idx, _strings([b[2] for b in SIZE_BANDS]).take(band[idx])))
    sizes = _scatter(n, parts)
    big = np.flatnonzero((band == len(SIZE_BANDS) - 1) & (rng.random(n) < 0.15))
    sizes = _override(sizes, big, _strings(("1,000+", "10000+", "5000+")).take(rng.integers(0, 3, len(big))))
    return _blank(rng, sizes, 0.22)


def _counts(rng: np.random.Generator, values: np.ndarray, blank: float, absurd: float = 0.0) -> pa.Array:
    """Counters as exported: mostly integers, some empty, a few absurd or not numbers at all."""
    text = _num(values)
    if absurd:
        idx = _subset(rng, len(values), absurd)
        odd = _strings(("99999",) * 3 + COUNT_GARBAGE)
        text = _override(text, idx, odd.take(rng.integers(0, len(odd), len(idx))))
    return _blank(rng, text, blank)


def _pick_rows(rng: np.random.Generator, preferred: np.ndarray, k: int) -> np.ndarray:
    """k distinct rows, sorted: from the `preferred` mask, topped up from the rest when it is short."""
    first = np.flatnonzero(preferred)
    if k <= len(first):
        return np.sort(rng.choice(first, size=k, replace=False))
    rest = np.flatnonzero(~preferred)
    top_up = rng.choice(rest, size=min(k - len(first), len(rest)), replace=False)
    return np.sort(np.concatenate([first, top_up]))


def generate_leads(
    n: int,
    seed: int = 7,
    start: str = "2024-01-01",
    end: str = "2025-12-31",
    bad_fraction: float = 0.02,
    repeat_fraction: float = 0.15,
) -> pd.DataFrame:
    """`n` messy lead submissions as strings in the canonical columns, the same for the same arguments."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if not (0.0 <= bad_fraction <= 1.0 and 0.0 <= repeat_fraction <= 1.0):
        raise ValueError("bad_fraction and repeat_fraction must be between 0 and 1")
    t0, t1 = _utc_seconds(start), _utc_seconds(end, end_of_day=True)
    if t1 < t0:
        raise ValueError("end must not be before start")
    if n == 0:
        return pd.DataFrame({c: pd.array([], dtype=STRING) for c in CANONICAL_COLUMNS})
    rng = np.random.default_rng(seed)
    market = _market()
    n_dup = round(n * DUPLICATE_FRACTION)
    n_repeat = min(round(n * repeat_fraction), n - n_dup - 1)
    people = n - n_dup - n_repeat
    rows = n - n_dup

    # People: who they are does not change between their submissions.
    company = rng.choice(len(market.weight), size=people, p=market.weight)
    country = np.where(
        rng.random(people) < 0.85, market.country[company], _draw(rng, people, [c.weight for c in COUNTRIES])
    )
    region_ids = _names("first")[2]
    region = np.array([region_ids[c.region] for c in COUNTRIES])[country]
    first_display, first_ascii, _ = _names("first")
    last_display, last_ascii, _ = _names("last")
    first_i = _local_or_global(rng, first_display, region)
    last_i = _local_or_global(rng, last_display, region)
    free_mail = rng.random(people) < 0.3
    email = _emails(
        rng,
        first_ascii.values.take(first_i),
        last_ascii.values.take(last_i),
        free_mail,
        market.domain.take(company),
    )
    area_pool = _Pool.of([[a.split(":")[0] for a in c.areas] for c in COUNTRIES])
    area_digits = np.array([int(a.split(":")[1]) for c in COUNTRIES for a in c.areas])
    area = area_pool.index(rng, country)
    digits = area_digits[area]
    subscriber = (rng.random(people) * 8 * 10.0 ** (digits - 1) + 2 * 10.0 ** (digits - 1)).astype(np.int64)
    title = rng.integers(0, len(JOB_TITLES), people)
    engagement = rng.gamma(1.2, 1.0, people)
    first_source = _draw(rng, people, [s[0] for s in SOURCES.values()])
    first_time = _base_times(rng, people, t0, t1)

    # Submissions: everyone once, some again later through another channel.
    again = rng.integers(0, people, n_repeat)
    person = np.concatenate([np.arange(people), again])
    later = first_time[again] + np.maximum(rng.exponential(20 * 86_400, n_repeat), 300).astype(np.int64)
    seconds = np.concatenate([first_time, np.minimum(later, t1)])
    shift = rng.integers(1, len(SOURCE_NAMES), n_repeat)
    source = np.concatenate([first_source, (first_source[again] + shift) % len(SOURCE_NAMES)])
    order = np.argsort(seconds, kind="stable")
    person, seconds, source = person[order], seconds[order], source[order]
    columns = _render_rows(
        rng,
        market,
        person,
        seconds,
        source,
        company,
        country,
        first_i,
        last_i,
        email,
        free_mail,
        area,
        subscriber,
        digits,
        area_pool.values,
        title,
        engagement,
    )

    spam = _subset(rng, rows, SPAM_FRACTION)
    _add_spam(rng, columns, spam, email.take(person[spam]))
    n_bad = round(n * bad_fraction)
    not_spam = np.ones(rows, dtype=bool)
    not_spam[spam] = False
    bad = _pick_rows(rng, not_spam, min(n_bad, rows))
    _add_bad(rng, columns, bad, email.take(person[bad]))

    # Exact re-deliveries sit right after the row they repeat, like a retried webhook.
    candidates = pc.is_valid(columns["external_id"]).to_numpy(zero_copy_only=False)
    candidates[bad] = False
    dup = _pick_rows(rng, candidates, n_dup)
    final = pa.array(np.sort(np.concatenate([np.arange(rows), dup]), kind="stable"))
    return pd.DataFrame({c: pd.array(columns[c].take(final), dtype=STRING) for c in CANONICAL_COLUMNS})


def _local_or_global(rng: np.random.Generator, pool: _Pool, region: np.ndarray) -> np.ndarray:
    """Name indices: mostly from the lead's region, sometimes from anywhere (people move)."""
    local = pool.index(rng, region)
    anywhere = rng.integers(0, len(pool.values), len(region))
    return np.where(rng.random(len(region)) < 0.75, local, anywhere)


def _emails(
    rng: np.random.Generator, first: pa.Array, last: pa.Array, free_mail: np.ndarray, work_domain: pa.Array
) -> pa.Array:
    """Each person's e-mail address in lower case: work patterns at the company, or a free mailbox."""
    n = len(first)
    initial = pc.utf8_slice_codeunits(first, 0, 1)
    work_shapes = [
        _cat(first, ".", last),
        _cat(initial, last),
        first,
        _cat(first, "_", last),
        _cat(first, last),
        _cat(last, ".", first),
        _cat(initial, ".", last),
    ]
    shape = _draw(rng, n, (0.55, 0.15, 0.06, 0.05, 0.07, 0.04, 0.08))
    local = _scatter(
        n,
        [(np.flatnonzero(shape == k), v.take(np.flatnonzero(shape == k))) for k, v in enumerate(work_shapes)],
    )
    # Free mailboxes are crowded, so people add numbers: two digits or a birth year.
    free = np.flatnonzero(free_mail)
    tag = np.where(
        rng.random(len(free)) < 0.5, rng.integers(1, 100, len(free)), rng.integers(1955, 2006, len(free))
    )
    with_tag = rng.random(len(free)) < 0.7
    tagged, tag_text = free[with_tag], _num(tag[with_tag])
    local = _override(local, tagged, _cat(local.take(tagged), tag_text))
    domain = _override(
        work_domain, free, _strings(FREE_MAIL).take(rng.integers(0, len(FREE_MAIL), len(free)))
    )
    return _cat(local, "@", domain)


def _render_rows(
    rng: np.random.Generator,
    market: _Market,
    person: np.ndarray,
    seconds: np.ndarray,
    source: np.ndarray,
    company: np.ndarray,
    country: np.ndarray,
    first_i: np.ndarray,
    last_i: np.ndarray,
    email: pa.Array,
    free_mail: np.ndarray,
    area: np.ndarray,
    subscriber: np.ndarray,
    digits: np.ndarray,
    areas: pa.Array,
    title: np.ndarray,
    engagement: np.ndarray,
) -> dict[str, pa.Array]:
    """Every submission typed out: the person's facts, re-typed a little differently each time."""
    n = len(person)
    out: dict[str, pa.Array] = {}
    row_company, row_country = company[person], country[person]

    address = email.take(person)
    mixed = _subset(rng, n, 0.04)
    address = _override(address, mixed, _random_upper(rng, address.take(mixed)))
    out["email"] = _pad(rng, _recase(rng, address, upper=0.05, title=0.04), 0.06)
    out["submitted_at"] = _timestamps(rng, seconds)
    out["source"] = _Pool.of(list(SOURCE_SPELLINGS.values())).pick(rng, source, first=0.5)

    # Each channel numbers its own submissions in time order: wf-000123.
    by_source = np.argsort(source, kind="stable")
    counts = np.bincount(source, minlength=len(SOURCE_NAMES))
    serial = np.empty(n, dtype=np.int64)
    serial[by_source] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    prefixes = _strings([f"{spec[1]}-" for spec in SOURCES.values()])
    ids = _cat(prefixes.take(source), _num(serial + 1 + rng.integers(0, 900, len(SOURCE_NAMES))[source], 6))
    out["external_id"] = _blank(rng, ids, 0.3)

    first_display, _, _ = _names("first")
    last_display, _, _ = _names("last")
    first = first_display.values.take(first_i[person])
    last = last_display.values.take(last_i[person])
    # Some people put their whole name in the first-name box.
    whole = _subset(rng, n, 0.02)
    first = _override(first, whole, _cat(first.take(whole), " ", last.take(whole)))
    last = _override(last, whole, pa.nulls(len(whole), pa.string()))
    out["first_name"] = _pad(rng, _blank(rng, _recase(rng, first, lower=0.06, upper=0.04), 0.04), 0.05)
    out["last_name"] = _pad(rng, _blank(rng, _recase(rng, last, lower=0.06, upper=0.05), 0.06), 0.04)

    out["phone"] = _phones(rng, row_country, area[person], subscriber[person], digits[person], areas)
    titles = _strings(JOB_TITLES).take(title[person])
    out["job_title"] = _pad(rng, _blank(rng, _recase(rng, titles, lower=0.08, upper=0.03), 0.12), 0.03)
    out["country"] = _blank(rng, _Pool.of([c.spellings for c in COUNTRIES]).pick(rng, row_country, 0.4), 0.1)

    out["company"] = _company_names(rng, market, row_company, free_mail[person])
    out["website"] = _websites(rng, market.domain.take(row_company))
    _utm(rng, out, source)
    demo_talk = _messages(rng, out, source)

    views = rng.poisson(2 + 6 * engagement[person])
    out["page_views"] = _counts(rng, views, 0.15, absurd=0.004)
    out["pricing_page_visits"] = _counts(
        rng, rng.binomial(views, np.minimum(0.08 * engagement[person], 0.6)), 0.2, absurd=0.001
    )
    out["content_downloads"] = _counts(rng, rng.poisson(0.5 * engagement[person]), 0.3)
    wants_demo = rng.random(n) < np.where(
        demo_talk, 0.75, 0.08 + 0.1 * (source == SOURCE_NAMES.index("webinar"))
    )
    bools = _strings(BOOLS)
    yes_no = np.where(wants_demo, rng.choice([0, 2, 4, 6, 7], n), rng.choice([1, 3, 5, 8, 9], n))
    out["demo_requested"] = _blank(rng, bools.take(yes_no), 0.4)
    out["email_opt_in"] = _blank(rng, _strings(OPT_IN).take(rng.integers(0, len(OPT_IN), n)), 0.25)

    # Free-mailers often skip company questions altogether.
    skipped = pa.array(free_mail[person] & (rng.random(n) < 0.5))
    sizes = _company_size(rng, market.employees[row_company])
    out["company_size"] = pc.if_else(skipped, pa.scalar(None, pa.string()), sizes)
    industry = _Pool.of([spec[0] for spec in INDUSTRIES.values()]).pick(
        rng, market.industry[row_company], 0.55
    )
    out["industry"] = _blank(rng, _recase(rng, industry, lower=0.08), 0.25)
    out["ip_address"] = _ips(rng, n)
    fill = np.round(np.exp(rng.normal(np.log(45), 0.6, n)), 1)
    form = np.isin(source, [SOURCE_NAMES.index(s) for s in FORM_SOURCES])
    out["form_fill_seconds"] = pc.if_else(
        pa.array(form & (rng.random(n) < 0.85)),
        pc.cast(pa.array(fill), pa.string()),
        pa.scalar(None, pa.string()),
    )
    out["honeypot"] = pa.nulls(n, pa.string())
    return out


def _company_names(
    rng: np.random.Generator, market: _Market, company: np.ndarray, free_mail: np.ndarray
) -> pa.Array:
    """Company names as typed: suffix spelled any way or dropped, 'The ', odd case, placeholders."""
    n = len(company)
    suffix = market.suffix[company]
    with_suffix = np.flatnonzero(suffix >= 0)
    spelled = _Pool.of(list(LEGAL_SUFFIXES.values())).pick(rng, suffix[with_suffix], first=0.6)
    dropped = rng.random(len(with_suffix)) < 0.15
    spelled = pc.if_else(pa.array(dropped), "", spelled)
    names = market.base.take(company)
    names = _override(names, with_suffix, _cat(names.take(with_suffix), spelled))
    the = _subset(rng, n, 0.03)
    names = _override(
        names, the, _cat(_strings(("The ", "the ")).take(rng.integers(0, 2, len(the))), names.take(the))
    )
    names = _pad(rng, _recase(rng, names, lower=0.08, upper=0.04), 0.03)
    placeholder = np.flatnonzero(free_mail & (rng.random(n) < 0.4))
    names = _override(
        names, placeholder, _strings(NO_COMPANY).take(rng.integers(0, len(NO_COMPANY), len(placeholder)))
    )
    return _blank(rng, names, 0.06)


def _websites(rng: np.random.Generator, domain: pa.Array) -> pa.Array:
    """Company websites typed every which way: https://www.acme.com/, acme.com, WWW.ACME.COM."""
    n = len(domain)
    shapes = (
        "https://www.{d}/",
        "{d}",
        "www.{d}",
        "WWW.{D}",
        "http://{d}",
        "https://{d}",
        "https://www.{d}/contact",
        "{D}",
    )
    kind = _draw(rng, n, (0.25, 0.3, 0.15, 0.05, 0.08, 0.1, 0.04, 0.03))
    parts = []
    for k, template in enumerate(shapes):
        idx = np.flatnonzero(kind == k)
        d = domain.take(idx)
        parts.append((idx, _render(template, {"d": d, "D": pc.utf8_upper(d)})))
    return _blank(rng, _scatter(n, parts), 0.35)


def _utm(rng: np.random.Generator, out: dict[str, pa.Array], source: np.ndarray) -> None:
    """UTM tags that fit the channel, when the channel sets any."""
    n = len(source)
    parts: dict[str, list[tuple[np.ndarray, pa.Array]]] = {
        "utm_source": [],
        "utm_medium": [],
        "utm_campaign": [],
    }
    for k, name in enumerate(SOURCE_NAMES):
        src, med, camp, share = UTM[name]
        idx = np.flatnonzero((source == k) & (rng.random(n) < share))
        for column, pool in (("utm_source", src), ("utm_medium", med), ("utm_campaign", camp)):
            parts[column].append((idx, _strings(pool).take(rng.integers(0, len(pool), len(idx)))))
    out["utm_source"] = _scatter(n, parts["utm_source"])
    out["utm_medium"] = _scatter(n, parts["utm_medium"])
    out["utm_campaign"] = _blank(rng, _scatter(n, parts["utm_campaign"]), 0.15)


def _messages(rng: np.random.Generator, out: dict[str, pa.Array], source: np.ndarray) -> np.ndarray:
    """Free-text messages; returns which rows talk about a demo."""
    n = len(source)
    share = np.select(
        [source == SOURCE_NAMES.index("live_chat"), source == SOURCE_NAMES.index("web_form")],
        [0.85, 0.5],
        0.2,
    )
    body = rng.integers(0, len(MESSAGE_BODIES), n)
    text = _cat(
        _strings(MESSAGE_OPENERS).take(rng.integers(0, len(MESSAGE_OPENERS), n)),
        _strings([b for b, _ in MESSAGE_BODIES]).take(body),
        _strings(MESSAGE_CLOSERS).take(rng.integers(0, len(MESSAGE_CLOSERS), n)),
    )
    has = rng.random(n) < share
    out["message"] = pc.if_else(pa.array(has), text, pa.scalar(None, pa.string()))
    return has & np.array([demo for _, demo in MESSAGE_BODIES])[body]


def _ips(rng: np.random.Generator, n: int) -> pa.Array:
    """Client IPs: mostly IPv4, some IPv6, some missing."""
    octets = [_num(rng.integers(1, 224, n))] + [_num(rng.integers(0, 256, n)) for _ in range(3)]
    ips = _cat(octets[0], ".", octets[1], ".", octets[2], ".", octets[3])
    v6 = _subset(rng, n, 0.05)
    hexed = [_numerals(0, "x").take(rng.integers(0, 65_536, len(v6))) for _ in range(4)]
    ips = _override(ips, v6, _cat("2001:db8:", hexed[0], ":", hexed[1], "::", hexed[2], ":", hexed[3]))
    return _blank(rng, ips, 0.12)


def _add_spam(rng: np.random.Generator, out: dict[str, pa.Array], rows: np.ndarray, email: pa.Array) -> None:
    """Bot-like rows (unlabelled): honeypot filled, throwaway mailboxes, inhumanly fast, links in names."""
    k = len(rows)
    traits = rng.random((k, 4)) < np.array([0.5, 0.4, 0.5, 0.3])
    traits[~traits.any(axis=1), 0] = True
    idx = rows[traits[:, 0]]
    out["honeypot"] = _override(
        out["honeypot"], idx, _strings(SPAM_HONEYPOT).take(rng.integers(0, 5, len(idx)))
    )
    pick = traits[:, 1]
    local = pc.list_element(pc.split_pattern(email.filter(pa.array(pick)), "@"), 0)
    disposable = _strings(DISPOSABLE_MAIL).take(rng.integers(0, len(DISPOSABLE_MAIL), len(local)))
    out["email"] = _override(out["email"], rows[pick], _cat(local, "@", disposable))
    idx = rows[traits[:, 2]]
    fast = pc.cast(pa.array(np.round(rng.uniform(0.2, 1.5, len(idx)), 1)), pa.string())
    out["form_fill_seconds"] = _override(out["form_fill_seconds"], idx, fast)
    idx = rows[traits[:, 3]]
    out["first_name"] = _override(
        out["first_name"], idx, _strings(SPAM_NAMES).take(rng.integers(0, 5, len(idx)))
    )
    out["message"] = _override(
        out["message"], idx, _strings(SPAM_MESSAGES).take(rng.integers(0, 4, len(idx)))
    )


def _add_bad(rng: np.random.Generator, out: dict[str, pa.Array], rows: np.ndarray, email: pa.Array) -> None:
    """Rows that must be quarantined, each broken in exactly one way."""
    kind = _draw(rng, len(rows), BAD_KIND_WEIGHTS)
    none = pa.scalar(None, pa.string())

    def chosen(name: str) -> np.ndarray:
        return np.flatnonzero(kind == BAD_KINDS.index(name))

    sel = chosen("missing_email")
    out["email"] = _override(
        out["email"], rows[sel], pc.if_else(pa.array(rng.random(len(sel)) < 0.8), none, pa.scalar("  "))
    )
    sel = chosen("invalid_email")
    local_only = pc.list_element(pc.split_pattern(email.take(sel), "@"), 0)
    garbage = _strings(INVALID_EMAILS).take(rng.integers(0, len(INVALID_EMAILS), len(sel)))
    out["email"] = _override(
        out["email"], rows[sel], pc.if_else(pa.array(rng.random(len(sel)) < 0.5), local_only, garbage)
    )
    sel = chosen("invalid_submitted_at")
    out["submitted_at"] = _override(
        out["submitted_at"], rows[sel], _strings(INVALID_TIMESTAMPS).take(rng.integers(0, 10, len(sel)))
    )
    sel = chosen("future_submitted_at")
    future = pa.array(
        rng.integers(_utc_seconds("2099-01-01"), _utc_seconds("2099-12-31"), len(sel)).astype("datetime64[s]")
    )
    out["submitted_at"] = _override(
        out["submitted_at"], rows[sel], pc.strftime(future, format="%Y-%m-%dT%H:%M:%SZ")
    )
    sel = chosen("missing_source")
    out["source"] = _override(out["source"], rows[sel], pa.nulls(len(sel), pa.string()))
    sel = chosen("too_long")
    name_side = rng.random(len(sel)) < 0.5
    idx = rows[sel[name_side]]
    long_names = pc.utf8_slice_codeunits(
        pc.binary_repeat(_strings(("Alexandra ",)).take(np.zeros(len(idx), int)), 30), 0, 300
    )
    out["first_name"] = _override(out["first_name"], idx, long_names)
    idx = rows[sel[~name_side]]
    out["message"] = _override(out["message"], idx, _strings((LONG_MESSAGE,)).take(np.zeros(len(idx), int)))


def write_leads(frame: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write leads as CSV, JSON lines or Parquet; the format defaults from the file extension."""
    target = Path(path)
    fmt = fmt or _format_from_suffix(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(target, index=False)
    elif fmt == "jsonl":
        frame.to_json(target, orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(target, index=False, engine="pyarrow")
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return target


def _format_from_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".ndjson" in suffixes or ".json" in suffixes:
        return "jsonl"
    return "csv"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate N leads into a file."""
    parser = argparse.ArgumentParser(description="Generate realistic, messy lead submissions.")
    parser.add_argument("n", type=int, help="number of rows")
    parser.add_argument("out_path", help="output file (.csv, .jsonl or .parquet)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the file extension")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2025-12-31")
    parser.add_argument("--bad-fraction", type=float, default=0.02)
    parser.add_argument("--repeat-fraction", type=float, default=0.15)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    frame = generate_leads(
        args.n,
        seed=args.seed,
        start=args.start,
        end=args.end,
        bad_fraction=args.bad_fraction,
        repeat_fraction=args.repeat_fraction,
    )
    built = time.perf_counter()
    target = write_leads(frame, args.out_path, args.format)
    done = time.perf_counter()
    print(
        f"{len(frame):,} rows -> {target} ({target.stat().st_size / 1e6:.1f} MB); "
        f"generated in {built - began:.1f}s, written in {done - built:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
