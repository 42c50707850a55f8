# Reference fits of lme4::lmer with observation weights, for tests/test_weights.py.
#
# Run from this folder:  Rscript make_reference.R
# (R and lme4, nlme, mlmRev, jsonlite from Debian's packages.) Weights are drawn
# uniformly in [0.5, 2] (seed 1) and written with the data; factor levels sorted as in
# ../lme4/make_reference.R so that the treatment contrasts match formulaic's.
suppressPackageStartupMessages({library(lme4); library(nlme); library(mlmRev); library(jsonlite)})

sorted_levels <- function(df) {
  for (v in names(df)) if (is.factor(df[[v]]))
    df[[v]] <- factor(as.character(df[[v]]),
                      levels = sort(unique(as.character(df[[v]])), method = "radix"))
  df
}
with_weights <- function(df) { set.seed(1); df$w <- runif(nrow(df), 0.5, 2); df }

data_sets <- list(
  sleepstudy = with_weights(sorted_levels(as.data.frame(lme4::sleepstudy))),
  orthodont = with_weights(sorted_levels(as.data.frame(nlme::Orthodont)[, c("distance", "age", "Sex", "Subject")])),
  exam = with_weights(sorted_levels(as.data.frame(mlmRev::Exam)[, c("normexam", "standLRT", "sex", "school")]))
)
models <- list(
  list(name = "sleep_slope", data = "sleepstudy", formula = "Reaction ~ Days + (Days | Subject)"),
  list(name = "orthodont_slope", data = "orthodont", formula = "distance ~ age + Sex + (age | Subject)"),
  list(name = "exam_intercept", data = "exam", formula = "normexam ~ standLRT + sex + (1 | school)")
)
out <- list()
for (nm in names(data_sets)) write.csv(data_sets[[nm]], paste0(nm, ".csv"), row.names = FALSE)
for (m in models) for (reml in c(TRUE, FALSE)) {
  fit <- lmer(as.formula(m$formula), data_sets[[m$data]], weights = w, REML = reml)
  vc <- VarCorr(fit)[[1]]
  out[[paste0(m$name, if (reml) "_REML" else "_ML")]] <- list(
    data = paste0(m$data, ".csv"), formula = m$formula, method = if (reml) "REML" else "ML",
    criterion = if (reml) REMLcrit(fit) else deviance(fit),
    loglik = as.numeric(logLik(fit)), fixef = unname(fixef(fit)),
    se = unname(sqrt(diag(as.matrix(vcov(fit))))), sigma2 = sigma(fit)^2,
    cov_re = unname(as.matrix(vc)), group = names(VarCorr(fit))[1],
    factors = names(Filter(is.factor, data_sets[[m$data]])))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "reference.json")
cat("lme4", as.character(packageVersion("lme4")), "\n")
