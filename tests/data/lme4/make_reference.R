# Reference fits of lme4::lmer on textbook datasets, for tests/test_lme4_agreement.py.
#
# Run from this folder:  Rscript make_reference.R
# (R, lme4, nlme, mlmRev and jsonlite from Debian's packages: r-cran-lme4 r-cran-nlme
# r-cran-mlmrev r-cran-jsonlite.) It writes one CSV per dataset and reference.json.
# Factor levels are put in sorted (C-locale) order first, so that R's treatment
# contrasts have the same baseline as formulaic's; grouping columns are written as text.
suppressPackageStartupMessages({library(lme4); library(nlme); library(mlmRev); library(jsonlite)})

sorted_levels <- function(df) {
  for (v in names(df)) if (is.factor(df[[v]]))
    df[[v]] <- factor(as.character(df[[v]]),
                      levels = sort(unique(as.character(df[[v]])), method = "radix"))
  df
}
prep <- function(df, keep) sorted_levels(as.data.frame(df)[, keep])

data_sets <- list(
  sleepstudy = prep(lme4::sleepstudy, c("Reaction", "Days", "Subject")),
  dyestuff = prep(lme4::Dyestuff, c("Yield", "Batch")),
  dyestuff2 = prep(lme4::Dyestuff2, c("Yield", "Batch")),
  orthodont = prep(nlme::Orthodont, c("distance", "age", "Sex", "Subject")),
  chickweight = prep(datasets::ChickWeight, c("weight", "Time", "Diet", "Chick")),
  bodyweight = prep(nlme::BodyWeight, c("weight", "Time", "Diet", "Rat")),
  exam = prep(mlmRev::Exam, c("normexam", "standLRT", "sex", "schgend", "school")),
  hsb82 = prep(mlmRev::Hsb82, c("mAch", "ses", "minrty", "sector", "school")),
  co2 = prep(datasets::CO2, c("uptake", "conc", "Type", "Treatment", "Plant")),
  loblolly = prep(datasets::Loblolly, c("height", "age", "Seed")),
  oxboys = prep(nlme::Oxboys, c("height", "age", "Subject")),
  rail = prep(nlme::Rail, c("travel", "Rail")),
  ergo = prep(nlme::ergoStool, c("effort", "Type", "Subject")),
  orange = prep(datasets::Orange, c("circumference", "age", "Tree"))
)

models <- list(
  list(name = "sleep_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)"),
  list(name = "sleep_intercept", data = "sleepstudy", formula = "Reaction ~ Days + (1 | Subject)"),
  list(name = "sleep_slope_only", data = "sleepstudy", formula = "Reaction ~ Days + (0 + Days | Subject)"),
  list(name = "sleep_slope_minus1", data = "sleepstudy", formula = "Reaction ~ Days + (Days - 1 | Subject)"),
  list(name = "sleep_uncorrelated", data = "sleepstudy", formula = "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)"),
  list(name = "sleep_null", data = "sleepstudy", formula = "Reaction ~ 1 + (Days | Subject)"),
  list(name = "dyestuff", data = "dyestuff", formula = "Yield ~ 1 + (1 | Batch)"),
  list(name = "dyestuff2_boundary", data = "dyestuff2", formula = "Yield ~ 1 + (1 | Batch)"),
  list(name = "orthodont", data = "orthodont", formula = "distance ~ age + Sex + (age | Subject)"),
  list(name = "chickweight", data = "chickweight", formula = "weight ~ Time + Diet + (Time | Chick)"),
  list(name = "bodyweight", data = "bodyweight", formula = "weight ~ Time + Diet + (Time | Rat)"),
  list(name = "exam_q3", data = "exam", formula = "normexam ~ standLRT + sex + schgend + (standLRT + sex | school)"),
  list(name = "hsb82", data = "hsb82", formula = "mAch ~ ses + minrty + sector + (ses | school)"),
  list(name = "co2", data = "co2", formula = "uptake ~ conc + Type + Treatment + (1 | Plant)"),
  list(name = "loblolly", data = "loblolly", formula = "height ~ age + (age | Seed)"),
  list(name = "oxboys", data = "oxboys", formula = "height ~ age + (age | Subject)"),
  list(name = "rail", data = "rail", formula = "travel ~ 1 + (1 | Rail)"),
  list(name = "ergo", data = "ergo", formula = "effort ~ Type + (1 | Subject)"),
  list(name = "orange", data = "orange", formula = "circumference ~ age + (age | Tree)")
)

for (nm in names(data_sets)) {
  df <- data_sets[[nm]]
  for (v in names(df)) if (is.factor(df[[v]])) df[[v]] <- as.character(df[[v]])
  write.csv(df, paste0(nm, ".csv"), row.names = FALSE)
}

reference <- list()
for (m in models) for (reml in c(TRUE, FALSE)) {
  fit <- suppressMessages(suppressWarnings(
    lmer(as.formula(m$formula), data = data_sets[[m$data]], REML = reml)))
  vc <- VarCorr(fit)[[1]]
  if (length(VarCorr(fit)) > 1) {   # separate terms on one factor: a block-diagonal Ψ
    blocks <- lapply(VarCorr(fit), function(b) as.matrix(b))
    q <- sum(sapply(blocks, nrow)); psi <- matrix(0, q, q); at <- 0
    for (b in blocks) { k <- nrow(b); psi[at + 1:k, at + 1:k] <- b; at <- at + k }
  } else psi <- as.matrix(vc)
  re <- as.matrix(ranef(fit)[[1]])
  if (length(ranef(fit)) > 1) re <- do.call(cbind, lapply(ranef(fit), as.matrix))
  key <- paste0(m$name, if (reml) "_REML" else "_ML")
  reference[[key]] <- list(
    model = m$name, data = paste0(m$data, ".csv"), formula = m$formula,
    method = if (reml) "REML" else "ML",
    factors = names(Filter(is.factor, data_sets[[m$data]])),
    criterion = unname(if (reml) REMLcrit(fit) else deviance(fit)),
    loglik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"),
    aic = AIC(fit), bic = BIC(fit), nobs = nobs(fit),
    fixef_names = names(fixef(fit)), fixef = unname(fixef(fit)),
    se = unname(sqrt(diag(as.matrix(vcov(fit))))),
    vcov = unname(as.matrix(vcov(fit))),
    psi = unname(psi), sigma2 = sigma(fit)^2, theta = unname(getME(fit, "theta")),
    singular = isSingular(fit), group_levels = rownames(re), ranef = unname(re),
    lme4_version = as.character(packageVersion("lme4")),
    r_version = R.version.string)
}
write_json(reference, "reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE,
           matrix = "rowmajor")
cat("wrote", length(reference), "reference fits\n")
